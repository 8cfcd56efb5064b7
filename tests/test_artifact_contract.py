"""Artifacts describe themselves (issue 21, item 5): the .tflite sidecar's I/O contract, pruned
models' real dims, and the sherpa-onnx package README's commands, run as written."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgekd.audio import FeaturizerConfig, load_audio
from edgekd.export.litert import have_litert_torch
from edgekd.manifest import read_manifest
from edgekd.models import Checkpoint, load_checkpoint, load_preset
from edgekd.models.conformer import ConformerCTC
from edgekd.tokens import DEFAULT_TOKENS


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    torch.manual_seed(3)
    model = ConformerCTC(load_preset("tiny")).eval()
    with torch.no_grad():
        model.head.weight.mul_(8.0)  # confident outputs, so transcripts are not empty
    p = tmp_path_factory.mktemp("contract") / "student.safetensors"
    Checkpoint(model, FeaturizerConfig(), DEFAULT_TOKENS, "tiny", "student").save(p)
    return p


@pytest.mark.skipif(not have_litert_torch(), reason="litert-torch not installed (pip install 'edgekd[tflite]')")
def test_tflite_sidecar_carries_the_whole_io_contract(student, tmp_path):
    from edgekd.export.litert import TfliteModel, export_tflite, sidecar
    from edgekd.export.runtime import open_model

    ck = load_checkpoint(student)
    p = export_tflite(ck, tmp_path / "m.tflite", window_frames=120, context_frames=24)
    meta = json.loads(sidecar(p).read_text())
    c = meta["contract"]
    assert FeaturizerConfig.from_dict(json.loads(meta["featurizer"])) == ck.featurizer
    assert json.loads(meta["tokens"]) == list(DEFAULT_TOKENS) and json.loads(meta["dims"]) == ck.dims.to_dict()
    assert c["window_frames"] == 120 and c["context_frames"] == 24 and meta["context_frames"] == "24"
    assert c["stride_frames"] == 72 and c["frame_rate"] == ck.frame_rate
    m = TfliteModel(p)
    assert list(m.x_in["shape"]) == c["input"]["shape"] and list(m.out["shape"]) == c["output"]["shape"]
    # the written output-length rule, applied as a reader would, is the model's own
    for n in (1, 7, 8, 9, 60, 119, 120):
        k = n
        for _ in range(c["output_length"]["halvings"]):
            k = max((k - 1) // 2, 0)
        assert k == int(ck.model.output_lengths(torch.tensor([n]))[0]), n
    # a runner that knows only the file decodes with the context it was exported (and verified) with
    assert open_model(p).context == 24


def test_pruned_artifacts_carry_their_real_dims(student, tmp_path):
    from edgekd.export import PruneOptions, run_prune
    from edgekd.export.onnx import export_onnx, read_metadata

    run_prune(PruneOptions(ratio=0.5, multiple=4, finetune_steps=0), student, tmp_path / "p", progress=False)
    ck = load_checkpoint(tmp_path / "p/model.safetensors")
    assert ck.preset == "pruned-from:tiny"  # not "tiny": the tiny preset's dims would rebuild the wrong model
    assert ck.dims.ffn_dims and ck.dims.to_dict() != load_preset("tiny").to_dict()
    meta = read_metadata(export_onnx(ck, tmp_path / "pruned.onnx"))
    assert meta["preset"] == "pruned-from:tiny" and json.loads(meta["dims"]) == ck.dims.to_dict()
    from edgekd.export.prune import pruned_preset

    assert pruned_preset("pruned-from:tiny") == "pruned-from:tiny" and pruned_preset("") == ""


def _blocks(readme: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", readme, re.S)


@pytest.mark.parametrize("int8", [False, True])
def test_sherpa_package_readme_commands_run_as_written(student, corpus, tmp_path, int8):
    from edgekd.export import write_sherpa_package
    from edgekd.export.onnx import export_onnx
    from edgekd.export.quantize import quantize

    ck = load_checkpoint(student)
    fp32 = export_onnx(ck, tmp_path / "m.onnx")
    q = quantize(fp32, tmp_path / "q.onnx", "int8-dynamic") if int8 else None
    pkg = write_sherpa_package(fp32, q, tmp_path / "pkg")
    readme = (pkg / "README.md").read_text()
    u = read_manifest(corpus / "source/test.jsonl")[0]
    samples = load_audio(u.audio)
    # the Python snippet, run in the package folder with the user's `samples`
    (py,) = _blocks(readme, "python")
    np.save(tmp_path / "s.npy", samples)
    out = subprocess.run([sys.executable, "-c", "import numpy, sys\nsamples = numpy.load(sys.argv[1])\n" + py,
                          str(tmp_path / "s.npy")], cwd=pkg, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    py_text = out.stdout.strip()
    (sh,) = _blocks(readme, "sh")
    cmd = sh.strip()
    assert "--zipformer2-ctc-model" not in cmd  # "Invalid option" on sherpa-onnx 2.0.1
    if shutil.which(cmd.split()[0]) is None:
        pytest.skip(f"{cmd.split()[0]} not installed (pip install sherpa-onnx-bin); only the Python snippet ran")
    wav = tmp_path / "x.wav"
    shutil.copyfile(u.audio, wav)
    r = subprocess.run(cmd.replace("x.wav", str(wav)), shell=True, cwd=pkg, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-500:]
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("{")]
    assert " ".join(json.loads(line)["text"].split()) == " ".join(py_text.split())
