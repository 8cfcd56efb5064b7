"""Artifacts describe themselves (issue 21, item 5): pruned models' real dims, and the sherpa-onnx
package README's commands, run as written. (The .tflite sidecar's I/O contract is tested in
test_export.py, on the LiteRT conversion the windowed-model tests share.)"""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgekd.audio import FeaturizerConfig, load_audio
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
