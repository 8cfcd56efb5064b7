"""Verification that matches deployment, and `edgekd transcribe` (issue 21, items 1 and 4), on a tiny
model and real (synthetic) speech: every artifact decoded in its own runtime, long audio included,
and transcribe printing, for each artifact kind, the transcript verify checked."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgekd.audio import FeaturizerConfig
from edgekd.export.litert import have_litert_torch
from edgekd.manifest import read_manifest
from edgekd.models import Checkpoint, load_preset
from edgekd.models.conformer import ConformerCTC
from edgekd.tokens import DEFAULT_TOKENS
from test_remote import sshd  # noqa: F401  (a real OpenSSH server on 127.0.0.1; skips without one)

TEST = "source/test.jsonl"
HAVE_BIN = shutil.which("sherpa-onnx-offline") is not None


@pytest.fixture(scope="module")
def exported(tmp_path_factory, corpus):
    """One export (fp32 + int8 ONNX, LiteRT fp32 with a 6 s window, sherpa package), verified. The
    weights and window are test_export's tflite600: one conversion serves both (the run's graph cache)."""
    from edgekd.export import ExportOptions, run_export

    d = tmp_path_factory.mktemp("deploy")
    torch.manual_seed(3)
    model = ConformerCTC(load_preset("tiny")).eval()
    with torch.no_grad():
        model.head.weight.mul_(8.0)  # confident outputs: a random model is otherwise near-uniform
    Checkpoint(model, FeaturizerConfig(), DEFAULT_TOKENS, "tiny", "student").save(d / "student.safetensors")
    opts = ExportOptions(quantize=("int8-dynamic",), tflite=("fp32",) if have_litert_torch() else (),
                         tflite_window=600, tflite_context=48, verify_utts=5, latency_repeats=1,
                         bundle_utts=5)
    m = json.loads(run_export(opts, d / "student.safetensors", d / "out", test_manifest=corpus / TEST,
                              progress=False).read_text())
    rows = {r["artifact"]: r for r in json.loads((d / "out/verify.table.json").read_text())["rows"]}
    texts = json.loads((d / "out" / m["outputs"]["transcripts"]).read_text())
    return d, rows, texts, m


def test_verify_decodes_each_artifact_in_its_runtime_with_long_audio(exported):
    d, rows, texts, m = exported
    runtimes = {r["artifact"]: r["runtime"] for r in rows.values()}
    assert runtimes["onnx-fp32"] == "onnxruntime" and runtimes["sherpa-onnx"] == "sherpa-onnx"
    assert runtimes["sherpa-onnx-int8"] == "sherpa-onnx"  # the int8 file in sherpa-onnx's bundled runtime too
    if HAVE_BIN:
        assert runtimes["sherpa-onnx[bin]"] == "sherpa-onnx-offline"
    else:
        assert any("sherpa-onnx-bin" in n for n in m["metrics"]["notes"])
    ref = texts["pytorch"]
    long_ids = [k for k in ref if k.startswith("long:")]
    assert len(long_ids) == 1 and len(ref) == 6  # the split has no 30 s utterance: one was built
    for r in rows.values():
        assert r["long_utterances"] == 1 and r["utterances"] == 6
        assert r["identical"] is not None and r["rel_delta_wer"] is not None
    # fp32 in onnxruntime and in sherpa-onnx (Python and binary): PyTorch's transcripts, long audio included
    for name in ("onnx-fp32", "sherpa-onnx") + (("sherpa-onnx[bin]",) if HAVE_BIN else ()):
        r = rows[name]
        assert r["identical"] == 1.0 and r["identical_long"] == 1.0 and r["ok"], r
        assert texts[name] == ref
    assert rows["onnx-fp32"]["max_diff"] < 1e-3 and rows["sherpa-onnx"]["max_diff"] is None  # text-only runtime
    assert m["metrics"]["failed"] == [r["artifact"] for r in rows.values() if not r["ok"]]


@pytest.mark.skipif(not have_litert_torch(), reason="litert-torch not installed (pip install 'edgekd[tflite]')")
def test_litert_over_long_audio_says_when_windows_change_the_transcript(exported):
    d, rows, texts, _ = exported
    r = rows["tflite-fp32.chunked"]
    assert r["runtime"] == "litert"
    (k,) = [k for k in texts["pytorch"] if k.startswith("long:")]
    changed = texts["tflite-fp32.chunked"][k] != texts["pytorch"][k]
    assert (r["identical_long"] < 1.0) == changed
    if changed:  # a 6 s window over 30 s: the row says so and points at streaming
        assert "long utterances" in r["note"] and "streaming" in r["note"]
        assert "streaming" in (d / "out/verify.md").read_text()
    else:
        assert not r["note"]


def test_gates_are_per_precision_data():
    from edgekd.export.verify import GATES, _ok

    assert set(GATES) == {"fp32", "fp16", "int8-dynamic", "int8-static"}
    assert GATES["fp32"].min_identical >= 0.99 and GATES["int8-dynamic"].min_identical >= 0.9
    row = {"format": "onnx", "precision": "int8-dynamic", "identical": 0.95, "rel_delta_wer": 0.01, "max_diff": 3.0}
    assert _ok(row)  # int8's log-prob diff is reported, not gated
    assert not _ok(row | {"identical": 0.6})  # frame agreement alone no longer passes int8
    assert not _ok(row | {"rel_delta_wer": 0.2})
    assert not _ok(row | {"precision": "fp32", "identical": 1.0, "rel_delta_wer": 0.0, "max_diff": 0.01})


def test_verify_fails_an_artifact_that_is_not_the_model(exported, corpus, tmp_path):
    """A wrong model exported under the right name must fail verify's gates (transcripts differ)."""
    from edgekd.export.onnx import export_onnx
    from edgekd.export.verify import verify
    from edgekd.models import load_checkpoint
    from edgekd.records import Artifact

    d, *_ = exported
    torch.manual_seed(7)
    other = ConformerCTC(load_preset("tiny")).eval()
    with torch.no_grad():
        other.head.weight.mul_(8.0)
    p = export_onnx(Checkpoint(other, FeaturizerConfig(), DEFAULT_TOKENS, "tiny"), tmp_path / "other.onnx")
    rows = verify(load_checkpoint(d / "student.safetensors"), [Artifact("onnx-fp32", str(p), "onnx", "fp32")],
                  corpus / TEST, max_utts=3, repeats=1)
    assert not rows[1]["ok"] and rows[1]["max_diff"] > 1e-3


def test_verify_set_builds_long_audio_from_the_split(corpus):
    from edgekd.export.verify import verify_set

    ck = Checkpoint(ConformerCTC(load_preset("tiny")).eval(), FeaturizerConfig(), DEFAULT_TOKENS, "tiny")
    utts = verify_set(ck, corpus / TEST, 3)
    assert [u.long for u in utts] == [False, False, False, True]
    long = utts[-1]
    assert len(long.wave) >= 30 * 16000 and long.id.startswith("long:concat-")
    n = int(long.id.split("-")[1])  # utterances used, cycling through the 3 short ones
    assert long.text == " ".join(utts[i % 3].text for i in range(n)) and n >= 3


def _kinds(d):
    out = d / "out"
    kinds = [("checkpoint", str(d / "student.safetensors"), "auto", "pytorch"),
             ("onnx", str(out / "model.onnx"), "auto", "onnx-fp32"),
             ("onnx int8", str(out / "model.int8-dynamic.onnx"), "auto", "onnx-int8-dynamic"),
             ("sherpa package", str(out / "sherpa-onnx"), "auto", "sherpa-onnx"),
             ("sherpa int8 file", str(out / "sherpa-onnx/model.int8.onnx"), "sherpa-onnx", "sherpa-onnx-int8")]
    if have_litert_torch():
        kinds.append(("tflite", str(out / "model.fp32.tflite"), "auto", "tflite-fp32.chunked"))
    if HAVE_BIN:
        kinds.append(("sherpa binary", str(out / "sherpa-onnx"), "sherpa-onnx-offline", "sherpa-onnx[bin]"))
    return kinds


def test_transcribe_gives_verifys_transcript_for_every_artifact_kind(exported, corpus):
    from edgekd.transcribe import TranscribeOptions, transcribe

    d, rows, texts, _ = exported
    for kind, model, runtime, row in _kinds(d):
        got = {t.id: t.text for t in transcribe(TranscribeOptions(runtime=runtime), model, [corpus / TEST])}
        want = {k: v for k, v in texts[row].items() if not k.startswith("long:")}
        assert {k: got[k] for k in want} == want, kind
        assert any(want.values()), kind  # compared real text, not only empty strings


def test_transcribe_cli_bad_files_one_line_each_and_json(exported, corpus, tmp_path):
    d, rows, texts, _ = exported
    utts = read_manifest(corpus / TEST)[:2]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    folder = tmp_path / "rec"
    folder.mkdir()
    shutil.copyfile(utts[1].audio, folder / "second.wav")
    cmd = [sys.executable, "-m", "edgekd.cli", "transcribe", str(d / "out/sherpa-onnx"), utts[0].audio, str(bad),
           str(tmp_path / "missing.wav"), str(folder)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    err = [x for x in r.stderr.splitlines() if x.startswith("edgekd:")]
    assert len(err) == 2 and "broken.wav" in err[0] and "missing.wav" in err[1]
    lines = [x.split("\t") for x in r.stdout.splitlines()]
    pkg_texts = texts["sherpa-onnx"]
    assert lines == [[Path(utts[0].audio).stem, pkg_texts[utts[0].id]],
                     ["second", pkg_texts[utts[1].id]]]
    r = subprocess.run(cmd[:4] + [str(d / "student.safetensors"), utts[0].audio, "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (obj,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert obj["text"] == texts["pytorch"][utts[0].id] and obj["tokens"]
    for t in obj["tokens"]:
        assert 0 <= t["start"] < t["end"] <= 30 and 0 < t["confidence"] <= 1
    assert "".join(t["token"] for t in obj["tokens"]).split() == obj["text"].split()


def test_transcribe_hf_model(corpus, tiny_hf_dir):
    from edgekd.decode import greedy
    from edgekd.teachers import load_teacher
    from edgekd.tokens import Tokenizer
    from edgekd.transcribe import TranscribeOptions, transcribe

    u = read_manifest(corpus / TEST)[0]
    (t,) = list(transcribe(TranscribeOptions(), f"hf:{tiny_hf_dir}", [u.audio]))
    from edgekd.audio import load_audio

    out = load_teacher(f"hf:{tiny_hf_dir}")([load_audio(u.audio)])
    assert not t.error and t.text == greedy(out.logits, out.lengths, Tokenizer(DEFAULT_TOKENS))[0]
    assert t.tokens is not None


def test_transcribe_bad_model_and_options_are_one_line(tmp_path):
    for args in (["transcribe", str(tmp_path / "nope.onnx"), "x.wav"],
                 ["transcribe", str(tmp_path), "x.wav", "--runtime", "litert"],
                 ["transcribe", str(tmp_path), "x.wav", "--threads", "0"]):
        r = subprocess.run([sys.executable, "-m", "edgekd.cli", *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, (args, r.stderr)


# ---- on-device WER (item 2): the torch-free runner decodes export's labelled bundle

FAST = dict(seconds=0.5, threads=1, iterations=2, warmup=0, min_iterations=1)


def _labelled(recs):
    return {r["metric"]: r for r in recs if r.get("mode") == "labelled"}


def _share_same(texts, name):
    ref = texts["pytorch"]
    return sum(texts[name][k] == v for k, v in ref.items()) / len(ref)


def test_runner_scores_the_bundle_like_verify(exported):
    from edgekd.decode import wer_cer
    from edgekd.profile.hostpin import run_local

    d, rows, texts, m = exported
    out = d / "out"
    b = json.loads((out / m["outputs"]["bundle"] / "bundle.json").read_text())
    assert [u["id"] for u in b["utterances"]] == list(texts["pytorch"])  # the verify set, long audio included
    assert [u["host_text"] for u in b["utterances"]] == list(texts["pytorch"].values())
    arts = [("model.onnx", "onnx-fp32"), ("model.int8-dynamic.onnx", "onnx-int8-dynamic")]
    if have_litert_torch():
        arts.append(("model.fp32.tflite", "tflite-fp32.chunked"))
    for f, name in arts:
        lab = _labelled(run_local(out / f, bundle=out / "bundle", min_identical=0.0, **FAST))
        assert set(lab) == {"wer", "identical_transcripts", "logprob_checksum_max_rel_diff"}, f
        # the device decodes what verify decoded on the host: same transcripts, same WER
        assert lab["identical_transcripts"]["value"] == pytest.approx(_share_same(texts, name)), f
        want = wer_cer([u["text"] for u in b["utterances"]], list(texts[name].values()))["wer"]
        assert lab["wer"]["value"] == pytest.approx(want, abs=1e-9), f
        assert lab["wer"]["extra"]["host_wer"] == pytest.approx(rows["pytorch"]["wer"], abs=1e-9)
    assert _labelled(run_local(out / "model.onnx", bundle=out / "bundle", **FAST))["logprob_checksum_max_rel_diff"][
        "value"] < 1e-4


def test_runner_fails_loudly_below_the_gate(exported):
    from edgekd.profile.hostpin import RunnerError, run_local

    d, *_ = exported
    with pytest.raises(RunnerError, match="transcripts differ from the host"):
        run_local(d / "out/model.onnx", bundle=d / "out/bundle", min_identical=1.01, **FAST)


def test_bundle_mode_stays_torch_free(exported, tmp_path):
    from edgekd.bench import RUNNER_PATH

    d, *_ = exported
    alone = tmp_path / "alone"
    alone.mkdir()
    for f in ("runner.py", "labelled.py"):  # what ssh_bench copies
        (alone / f).write_text(RUNNER_PATH.with_name(f).read_text())
    code = ("import sys, runpy; sys.argv=['runner.py','--model',sys.argv[1],'--bundle',sys.argv[2],'--seconds','0.5',"
            "'--iterations','1','--warmup','0','--threads','1']; import builtins; real=builtins.__import__\n"
            "def guard(n,*a,**k):\n    assert not n.startswith(('torch','edgekd')), n\n    return real(n,*a,**k)\n"
            "builtins.__import__=guard\nrunpy.run_path('runner.py', run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", code, str(d / "out/model.onnx"), str(d / "out/bundle")], cwd=alone,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-500:]
    assert {json.loads(x)["metric"] for x in p.stdout.splitlines()} >= {"wer", "identical_transcripts"}


def test_bundle_over_loopback_ssh(exported, sshd, tmp_path):
    from edgekd.profile.remote import ssh_bench

    d, rows, texts, _ = exported
    recs = ssh_bench(sshd, d / "out/model.onnx", tmp_path / "r.jsonl", device="rpi4", bundle=d / "out/bundle", **FAST)
    lab = _labelled(recs)
    assert lab["identical_transcripts"]["value"] == 1.0 and lab["wer"]["source"] == "measured-on-device"
    assert (Path(sshd.remote_dir) / "bundle/bundle.json").exists() and (Path(sshd.remote_dir) / "labelled.py").exists()
