"""`edgekd fit` on tiny models: budgets as data, impossible budgets refused before any work,
over-budget candidates never trained, proxy ranking, Pareto, a verified winner per device."""

import json
import subprocess
import sys

import pytest
import torch

from edgekd.errors import ConfigError, EdgekdError
from edgekd.fit import Budget, FitOptions, load_budget, run_fit
from edgekd.fit.budget import parse_mb
from edgekd.fit.report import pareto
from test_remote import sshd  # noqa: F401  (a real OpenSSH server on 127.0.0.1; skips without one)

TINY = dict(presets=(), widths=(32, 64), depths=(1, 2), precisions=("fp32", "int8-dynamic"), prune_ratios=(0.0,),
            proxy_steps=2, full_steps=4, top_k=3, workers=2, max_frames=3000, measure=True, seconds=2.0,
            verify_utts=3)


def test_budget_parsing_and_device_defaults():
    assert parse_mb("64MB", "memory") == 64 and parse_mb("512k", "m") == 0.5 and parse_mb("1.5GB", "m") == 1536
    assert parse_mb(3, "size") == 3.0
    for bad in ("lots", "-3MB", "12 parsecs", 0):
        with pytest.raises(ConfigError, match="fit.memory"):
            parse_mb(bad, "memory")
    b = load_budget({"device": "rpi4", "rtf": 0.1, "memory": "64MB"})
    assert (b.rtf, b.memory_mb, b.size_mb) == (0.1, 64.0, None)
    assert load_budget({"device": "rpi4"}).rtf == 0.5  # left out: the device profile's budgets
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['mem'\]"):
        load_budget({"device": "rpi4", "mem": "64MB"})
    with pytest.raises(ConfigError, match="would not keep up"):
        load_budget({"device": "rpi4", "rtf": 1.5})
    with pytest.raises(ConfigError, match="no budget"):
        Budget("nowhere")
    with pytest.raises(EdgekdError, match="rpi9"):
        load_budget({"device": "rpi9"})
    assert Budget("x", rtf=0.1, size_mb=2).margins({"rtf": 0.05, "size_mb": 3}) == {"rtf": 0.5, "size_mb": -0.5}


def test_spearman():
    from edgekd.fit.report import spearman

    assert spearman([0.1, 0.2, 0.3], [0.5, 0.6, 0.9]) == 1.0 and spearman([0.1, 0.2, 0.3], [3, 2, 1]) == -1.0
    assert spearman([0.1, 0.1, 0.1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None


def test_pareto_front_keeps_only_the_undominated():
    rows = [{"v": "a", "wer": 0.3, "rtf": 0.1, "memory_mb": 10, "size_mb": 1},
            {"v": "b", "wer": 0.2, "rtf": 0.2, "memory_mb": 10, "size_mb": 1},
            {"v": "c", "wer": 0.35, "rtf": 0.2, "memory_mb": 12, "size_mb": 1},  # worse than a on every axis
            {"v": "d", "wer": 0.3, "rtf": 0.1, "memory_mb": 8, "size_mb": 1}]  # beats a on memory only
    assert [r["v"] for r in pareto(rows)] == ["d", "b"]


def test_a_candidate_measured_over_budget_gives_way_to_the_next():
    from edgekd.fit.report import pick_winner

    rows = [{"variant": "a", "wer": 0.2, "rtf": 0.09}, {"variant": "b", "wer": 0.25, "rtf": 0.05},
            {"variant": "c", "wer": 0.3, "rtf": 0.04}]
    b = Budget("x", rtf=0.1)
    keys = ("wer", "rtf")
    assert pick_winner(rows, keys, b)[0]["variant"] == "a"  # estimates only
    host = {"a": 0.12, "b": 0.11, "c": 0.06}  # measured: a and b over the budget
    win, vetoed = pick_winner(rows, keys, b, lambda r: host[r["variant"]])
    assert win["variant"] == "c" and vetoed == ["a", "b"]
    assert pick_winner(rows, keys, b, lambda r: 0.5) == (None, ["a", "b", "c"])


@pytest.fixture(scope="module")
def pl(tmp_path_factory, small_corpus, tiny_ckpt_path):
    from edgekd.pseudolabel import PseudoLabelOptions, run_pseudolabel

    d = tmp_path_factory.mktemp("fit")
    run_pseudolabel(PseudoLabelOptions(workers=1, review_fraction=0.3), small_corpus / "target/train.jsonl",
                    [str(tiny_ckpt_path)], d / "pl", progress=False)
    return d / "pl"


def test_impossible_budget_is_refused_before_any_training(pl, small_corpus, tmp_path):
    opts = FitOptions(**{**TINY, "widths": (32,), "depths": (1,)})
    with pytest.raises(EdgekdError, match=r"nothing in the search space meets the rpi4 budget.*cheapest"):
        run_fit(opts, [load_budget({"device": "rpi4", "size": "1KB"})], pl, tmp_path,
                dev_manifest=small_corpus / "target/dev.jsonl", test_manifest=small_corpus / "target/test.jsonl")
    assert not (tmp_path / "train").exists()


def test_fit_two_devices_prunes_over_budget_and_picks_a_verified_winner(pl, small_corpus, tmp_path):
    torch.manual_seed(0)
    # Sizes of the grid (estimated from the ONNX files): w32-d1 0.16 / 0.08 MB (fp32 / int8), w32-d2
    # 0.25 / 0.13, w64-d1 0.40 / 0.17, w64-d2 0.69 / 0.30. 0.2 MB leaves w64-d2 without any variant.
    budgets = [load_budget({"device": "rpi4", "size": "0.2MB", "threads": 1}),
               load_budget({"device": "android-flagship", "size": "0.14MB", "rtf": 0.5})]
    m = json.loads(run_fit(FitOptions(**TINY), budgets, pl, tmp_path, dev_manifest=small_corpus / "target/dev.jsonl",
                           test_manifest=small_corpus / "target/test.jsonl", log=lambda s: None).read_text())
    rows = json.loads((tmp_path / "candidates.json").read_text())["rows"]
    over = {r["arch"] for r in rows} - {r["arch"] for r in rows if r["fits"]}
    assert over == {"w64-d2"} and not (tmp_path / "train" / "w64-d2-proxy").exists()
    assert {p.name for p in (tmp_path / "train").iterdir() if p.name.endswith("-proxy")} == \
        {"w32-d1-proxy", "w32-d2-proxy", "w64-d1-proxy"}
    for dev, lim in (("rpi4", 0.2), ("android-flagship", 0.14)):
        info = m["metrics"][dev]
        win = next(r for r in rows if r["device"] == dev and r["variant"] == info["winner"])
        assert win["fits"] and win["size_mb"] <= lim and info["margins"]["size_mb"] >= 0
        scored = [r for r in rows if r["device"] == dev and r["fits"] and r["wer"] is not None]
        assert win["wer"] == min(r["wer"] for r in scored)  # the best WER among those under budget
        assert info["winner"] in info["measured_on_host"] and info["measured_on_host"][info["winner"]]["rtf"] > 0
        assert (tmp_path / f"pareto-{dev}.png").stat().st_size > 0
        front = json.loads((tmp_path / f"pareto-{dev}.table.json").read_text())["rows"]
        assert sum(r["winner"] == "yes" for r in front) == 1
        assert (tmp_path / f"winner-{dev}" / "verify.table.json").exists()  # exported and verified
    rho = m["metrics"]["proxy_vs_final_spearman"]
    assert rho["n"] == 3 and (rho["rho"] is None or -1 <= rho["rho"] <= 1)  # 2-step proxies may all tie
    # resumable: everything is on disk, a second call trains nothing
    again = run_fit(FitOptions(**TINY), budgets, pl, tmp_path, dev_manifest=small_corpus / "target/dev.jsonl",
                    test_manifest=small_corpus / "target/test.jsonl", log=lambda s: None)
    assert json.loads(again.read_text())["metrics"]["rpi4"]["winner"] == m["metrics"]["rpi4"]["winner"]


def test_streaming_budget_fits_a_streaming_student_scored_by_sherpa_online(pl, small_corpus, sshd, tmp_path):
    """A streaming budget trains the streaming twins only, costs each chunk size per chunk, scores the
    variants in sherpa-onnx's online recognizer and ships a verified online package; a device
    reachable over ssh (a real OpenSSH server on 127.0.0.1) also runs the winner on the device."""
    with pytest.raises(ConfigError, match="needs streaming"):
        load_budget({"device": "pixel7", "chunk_ms": 320})
    budget = load_budget({"device": "pixel7", "streaming": True, "rtf": 0.5, "latency_ms": 500})
    assert budget.latency_ms == 500 and load_budget({"device": "pixel7", "streaming": True}).latency_ms is None
    opts = FitOptions(**{**TINY, "widths": (32,), "depths": (1,), "chunks_ms": (160, 320), "top_k": 1})
    with pytest.raises(ConfigError, match="whole number of 40 ms"):
        run_fit(opts, [load_budget({"device": "pixel7", "streaming": True, "chunk_ms": 300})], pl, tmp_path / "x",
                dev_manifest=small_corpus / "target/dev.jsonl", test_manifest=small_corpus / "target/test.jsonl")
    m = json.loads(run_fit(opts, [budget], pl, tmp_path, dev_manifest=small_corpus / "target/dev.jsonl",
                           test_manifest=small_corpus / "target/test.jsonl", targets={"pixel7": sshd},
                           log=lambda s: None).read_text())
    rows = json.loads((tmp_path / "candidates.json").read_text())["rows"]
    assert {r["arch"] for r in rows} == {"w32-d1-stream"}  # no offline architecture
    by = {r["variant"]: r for r in rows}
    a, b = by["w32-d1-stream-c160-fp32"], by["w32-d1-stream-c320-fp32"]  # more audio per call, less per second
    assert b["chunk_compute_ms"] > a["chunk_compute_ms"] and b["rtf"] < a["rtf"]
    assert b["latency_ms"] - a["latency_ms"] > 160 - 1  # the chunk itself is most of the latency
    info = m["metrics"]["pixel7"]
    win = by[info["winner"]]
    assert win["fits"] and win["chunk_ms"] in (160, 320) and win["latency_ms"] <= 500
    assert win["wer"] == min(r["wer"] for r in rows if r["fits"] and r["wer"] is not None)
    dev = info["measured_on_host"][info["winner"]]["on_device"]  # the runner's streaming loop, over ssh
    assert dev["rtf"] > 0 and dev["chunk_latency_p50_ms"] > 0 and "measured_on_device_meets_rtf" in info
    recs = [json.loads(x) for x in open(dev["records"])]
    assert {r["source"] for r in recs} == {"measured-on-device"} and dev["host"] == sshd.host
    hyps = list((tmp_path / "variants").glob("*.eval/hyps.jsonl"))
    assert hyps and all("-c" in h.parent.name for h in hyps)  # scored as streaming files
    exp = tmp_path / "winner-pixel7"
    table = json.loads((exp / "verify.table.json").read_text())["rows"]
    fp32 = next(r for r in table if r["artifact"] == f"{win['chunk_ms']}ms/model.onnx")
    assert fp32["runtime"] == "sherpa-onnx-online" and fp32["identical"] >= 0.99 and fp32["ok"]
    assert fp32["identical_long"] is not None  # long audio (>= 30 s) was in the verify set


def test_cli_fit_errors_are_one_line(tmp_path):
    for args, msg in ((["--device", "rpi4", "--mem", "lots"], "fit.memory"),
                      ([], "give --device"),
                      (["--device", "rpi4", "--rtf", "2"], "would not keep up")):
        r = subprocess.run([sys.executable, "-m", "edgekd.cli", "fit", "--pseudolabels", str(tmp_path), "--dev", "d",
                            "--test", "t", "--out", str(tmp_path / "o"), *args], capture_output=True, text=True)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_pipeline_fit_stage_from_budgets_and_bad_budget_stops_before_work(tmp_path):
    from edgekd.pipeline import build_stages
    from edgekd.pipeline.config import load_pipeline_config

    base = {"run_dir": str(tmp_path / "run"), "data": {"synth": True}}
    assert "fit" not in [s.name for s in build_stages(load_pipeline_config(None, base=base))]
    cfg = load_pipeline_config(None, base={**base, "fit": {"budgets": [{"device": "rpi3", "rtf": 0.2},
                                                                       {"device": "pixel7", "memory": "64MB"}]}})
    fit = next(s for s in build_stages(cfg) if s.name == "fit")
    assert {"soft_targets", "test", "dev"} <= set(fit.inputs)
    with pytest.raises(ConfigError, match="fit.memory"):
        build_stages(load_pipeline_config(None, base={**base, "fit": {"budgets": [{"device": "rpi3", "memory": "x"}]}}))
    with pytest.raises(ConfigError, match="fit.widths"):
        load_pipeline_config(None, base={**base, "fit": {"widths": "wide"}})
