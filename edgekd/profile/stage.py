"""The profile stage: artifacts x devices -> results.jsonl, one table per device, Pareto plots.

`run_profile(opts, artifacts, out_dir, wer=None)` runs, for every device in `opts.devices` and every
artifact, each requested mode:
  estimate  static graph analysis + roofline model (ONNX only)            source: estimated
  host      the runner here, pinned to the device's thread count          source: measured-on-host
  ssh       the runner on the device over ssh (opts.ssh_host)             source: measured-on-device
  adb       LiteRT benchmark_model on a phone (opts.adb_serial; .tflite)  source: measured-on-device
A failing artifact is logged in `errors.jsonl` with its reason and the rest go on; a device x
config listed as known-broken (effect `fails`) is skipped with its reason in `skipped.jsonl`.
Records already in `results.jsonl` for the same artifact hash, device, mode, threads and audio
length are kept, not re-measured (so a killed run resumes). A cache-aware streaming artifact (one
chunk size per file) is run and estimated as a stream (per-chunk compute, RTF, first partial, end of
speech -> final); its device gets `<device>_streaming.table.json` and, once two chunk sizes of it
are in, a latency-vs-chunk-size plot (edgekd/profile/stream_latency.py).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekd.manifest import StageManifest, iter_jsonl, sha256_file, write_jsonl
from edgekd.profile.devices import Device, load_device
from edgekd.records import Artifact, ProfileRecord

MODES = ("estimate", "host", "ssh", "adb")
SOURCE_OF = {"estimate": "estimated", "host": "measured-on-host", "ssh": "measured-on-device",
             "adb": "measured-on-device"}


@dataclass(frozen=True)
class ProfileOptions:
    devices: tuple[str, ...] = ("rpi4",)  # device profile names (devices/*.yaml) or YAML paths
    modes: tuple[str, ...] = ("estimate", "host")  # any of estimate, host, ssh, adb
    seconds: float = 10.0  # audio seconds per utterance (input length)
    threads: int = 0  # intra-op threads; 0 = each device's `threads`
    warmup: int = 3  # untimed runs after the first inference
    iterations: int = 20  # timed runs per artifact
    max_time: float = 60.0  # seconds of timing per artifact before stopping early
    chunk_seconds: float = 0.0  # >0: streaming loop with this window (fixed-length models always stream)
    ssh_host: str = ""  # user@host of the device for mode ssh
    ssh_port: int = 22
    ssh_identity: str = ""  # private key file for ssh (default: ssh's own)
    remote_python: str = "python3"  # interpreter on the device
    remote_venv: bool = True  # create/reuse a venv on the device; False = use remote_python as is
    remote_dir: str = "edgekd-bench"  # folder on the device (relative to the login's home)
    adb_serial: str = ""  # phone serial for mode adb
    benchmark_binary: str = ""  # local path of LiteRT benchmark_model (android_arm64) for mode adb
    cpu_mask: str = ""  # taskset mask for the phone's big cores (mode adb), e.g. "f0"
    bundle: str = ""  # labelled bundle (export's bundle/): the runner also reports WER and identical transcripts

    def __post_init__(self):
        self._verify()

    def _verify(self):
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes {list(self.modes)}: each must be one of {', '.join(MODES)}")
        if not self.devices:
            raise ValueError("devices: name at least one device profile")
        if self.seconds <= 0 or self.iterations < 1 or self.warmup < 0 or self.threads < 0:
            raise ValueError("seconds must be > 0, iterations >= 1, warmup >= 0, threads >= 0")
        if "ssh" in self.modes and not self.ssh_host:
            raise ValueError("modes includes ssh but ssh_host is empty")
        if "adb" in self.modes and not (self.adb_serial and self.benchmark_binary):
            raise ValueError("modes includes adb: give both adb_serial and benchmark_binary")
        if ("ssh" in self.modes or "adb" in self.modes) and len(self.devices) != 1:
            raise ValueError(f"ssh_host/adb_serial is one physical device but devices lists {len(self.devices)}")
        if self.bundle and "adb" in self.modes:  # benchmark_model only times; it cannot decode
            raise ValueError("bundle needs mode host or ssh (adb runs LiteRT's benchmark_model, which only times)")


def _key(r: dict) -> tuple:
    return (r["model"]["sha256"], r["device"], r["source"], r.get("threads"), r.get("audio_seconds"))


def _known_broken(fmt: str, mode: str, runtime: str) -> list[dict]:
    """Known-broken entries for profiling `fmt` in `mode` with `runtime` (checked before trying it)."""
    from edgekd.export.known_broken import check

    return check("profile", fmt, mode=mode, runtime=runtime)


def artifact_labels(artifacts: list[Path]) -> dict[Path, str]:
    """How each artifact is named in tables: its file name, or folder/file name where two share one
    (an export's student/model.onnx and pruned/model.onnx)."""
    names = [a.name for a in artifacts]
    return {a: (f"{a.parent.name}/{a.name}" if names.count(a.name) > 1 else a.name) for a in artifacts}


def _measure(mode: str, opts: ProfileOptions, dev: Device, art: Path, out_dir: Path, label: str = "") -> list[dict]:
    threads = opts.threads or dev.threads
    tag = (label or art.name).replace("/", "-").rsplit(".", 1)[0]  # for per-device output files
    common = dict(seconds=opts.seconds, warmup=opts.warmup, iterations=opts.iterations, max_time=opts.max_time,
                  chunk_seconds=opts.chunk_seconds, name=art.stem, bundle=opts.bundle)
    if mode == "estimate":
        from edgekd.profile.estimate import estimate_records

        return estimate_records(art, dev, seconds=opts.seconds, threads=threads)
    if mode == "host":
        from edgekd.profile.hostpin import run_host_pinned

        return run_host_pinned(dev, art, threads=threads, **common)
    if mode == "ssh":
        from edgekd.profile.remote import SshTarget, ssh_bench

        target = SshTarget(opts.ssh_host, port=opts.ssh_port, identity=opts.ssh_identity, python=opts.remote_python,
                           venv=opts.remote_venv, remote_dir=opts.remote_dir,
                           packages=("numpy", "ai-edge-litert" if art.suffix == ".tflite" else "onnxruntime"))
        return ssh_bench(target, art, out_dir / "device" / f"{dev.name}-{tag}.jsonl", threads=threads,
                         device=dev.name, **common)
    from edgekd.profile.remote import AdbTarget, adb_bench

    target = AdbTarget(opts.adb_serial, opts.benchmark_binary, cpu_mask=opts.cpu_mask)
    info = {"name": art.stem, "path": str(art), "format": art.suffix.lstrip("."), "quantization": "unknown",
            "sha256": sha256_file(art), "size_bytes": art.stat().st_size}
    return adb_bench(target, art, out_dir / "device" / f"{dev.name}-{tag}.jsonl", device=dev.name,
                     threads=threads, audio_seconds=opts.seconds, warmup=opts.warmup, iterations=opts.iterations,
                     model_info=info)


def run_profile(opts: ProfileOptions, artifacts: list[Path | Artifact], out_dir: str | Path,
                wer: dict[str, float] | None = None) -> Path:
    """Profile every artifact on every device; write results, tables, plots and the manifest.

    `artifacts`: files, or `Artifact` records from export's `artifacts.json` (their label and WER
    metadata name the rows). `wer`: optional WER (fraction or %) per artifact, keyed by label, file
    name or stem, for the Pareto plots. Returns the path of `manifest.json`.
    """
    t0 = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    devices = [load_device(d) for d in opts.devices]
    records_in = [a for a in artifacts if isinstance(a, Artifact)]
    artifacts = [Path(a.path) if isinstance(a, Artifact) else Path(a) for a in artifacts]
    labels = artifact_labels(artifacts)
    labels.update({Path(a.path): a.label for a in records_in})
    wer = {**{a.label: a.metadata["wer"] for a in records_in if a.metadata.get("wer") is not None}, **(wer or {})}
    results_path = out_dir / "results.jsonl"
    old = [r for _, r in iter_jsonl(results_path)] if results_path.exists() else []
    done = {_key(r) for r in old}
    records, errors, skipped = list(old), [], []
    for dev in devices:
        threads = opts.threads or dev.threads
        for art in artifacts:
            if not art.is_file():
                errors.append({"artifact": str(art), "device": dev.name, "error": "file does not exist"})
                continue
            digest = None
            for mode in opts.modes:
                fmt = art.suffix[1:].lower()
                cfg = {"runtime": "litert" if fmt == "tflite" else "onnxruntime", "format": fmt,
                       "threads": threads, "via": mode}
                broken = [kb for kb in dev.broken_for(cfg) if kb.effect == "fails"]
                if broken and mode != "estimate":
                    skipped.append({"artifact": labels[art], "device": dev.name, "mode": mode,
                                    "reason": broken[0].reason})
                    continue
                gaps = [e for e in _known_broken(fmt, mode, cfg["runtime"]) if e["effect"] == "fails"]
                if gaps:  # a known gap, not a failure
                    skipped.append({"artifact": labels[art], "device": dev.name, "mode": mode, "reason": gaps[0]["reason"]})
                    continue
                try:
                    digest = digest or _digest(art)
                    if (digest, dev.name, SOURCE_OF[mode], threads, opts.seconds) in done:
                        continue
                    new = _measure(mode, opts, dev, art, out_dir, labels[art])
                    for r in new:
                        r["model"]["artifact"] = labels[art]
                        ProfileRecord.from_dict(r)  # validates: a malformed record never reaches results.jsonl
                except Exception as e:  # noqa: BLE001 -- a batch job: log the failing artifact, go on
                    msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
                    errors.append({"artifact": str(art), "device": dev.name, "mode": mode,
                                   "error": f"{type(e).__name__}: {msg}"})
                    continue
                records += new
                write_jsonl(results_path, records)  # after every artifact: a kill loses at most one
    write_jsonl(results_path, records)
    write_jsonl(out_dir / "errors.jsonl", errors)
    write_jsonl(out_dir / "skipped.jsonl", skipped)
    outputs = {"results": "results.jsonl", "errors": "errors.jsonl", "skipped": "skipped.jsonl"}
    metrics: dict[str, Any] = {"records": len(records), "errors": len(errors), "skipped": len(skipped)}
    for dev in devices:
        rows = device_table(records, dev, wer)
        name = f"{dev.name}.table.json"
        (out_dir / name).write_text(json.dumps({"title": f"{dev.description} ({dev.name})", "rows": rows,
                                                "note": TABLE_NOTE}, indent=1) + "\n")
        outputs[f"table_{dev.name}"] = name
        if rows and any(r.get("wer") is not None for r in rows):
            png = pareto_plot(rows, out_dir / f"{dev.name}_pareto.png", title=f"WER vs latency: {dev.name}")
            if png:
                outputs[f"pareto_{dev.name}"] = png.name
        outputs.update(_streaming_outputs(records, dev, out_dir))
    man = StageManifest(stage="profile", config=_plain(dataclasses.asdict(opts)), outputs=outputs, metrics=metrics,
                        timings={"total": time.time() - t0})
    for a in artifacts:
        if a.is_file():
            man.add_inputs(a)
    return man.save(out_dir)


def _streaming_outputs(records: list[dict], dev: Device, out_dir: Path) -> dict[str, str]:
    """The streaming latency table of `dev` and, for several chunk sizes, its latency-vs-chunk plot."""
    from edgekd.profile.stream_latency import NOTE, latency_plot, streaming_rows

    rows = streaming_rows(records, dev)
    if not rows:
        return {}
    name = f"{dev.name}_streaming.table.json"
    (out_dir / name).write_text(json.dumps({"title": f"Streaming latency: {dev.description} ({dev.name})",
                                            "rows": rows, "note": NOTE}, indent=1) + "\n")
    png = latency_plot(rows, out_dir / f"{dev.name}_streaming.png", dev)
    return {f"streaming_{dev.name}": name, **({f"streaming_plot_{dev.name}": png.name} if png else {})}


def _digest(art: Path) -> str:
    from edgekd.bench.runner import model_files, sha256_files

    return sha256_files(model_files(art))


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


TABLE_NOTE = ("source says how each row was obtained: measured-on-device, measured-on-host (this machine pinned to "
              "the device's thread count -- not the device's speed) or estimated (roofline model; memory = weights "
              "+ peak live activations, without the runtime's own). RTF = processing s / audio s.")


def device_table(records: list[dict], device: Device | str, wer: dict[str, float] | None = None) -> list[dict]:
    """Rows for one device: artifact x source -> p50/p90 latency, RTF, peak memory, size, budget check."""
    dev = load_device(device) if isinstance(device, str) else device
    groups: dict[tuple, dict[str, dict]] = {}
    for r in records:
        if r["device"] != dev.name:
            continue
        k = (r["model"].get("artifact") or r["model"]["name"], r["source"], r.get("threads"), r.get("audio_seconds"))
        groups.setdefault(k, {})[r["metric"]] = r
    rows = []
    for (art, source, threads, secs), m in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        any_r = next(iter(m.values()))
        p50 = m.get("latency_p50", m.get("latency_est", m.get("latency_mean")))
        mem = m.get("peak_rss", m.get("memory_est"))
        row = {"artifact": art, "format": any_r["model"].get("format"),
               "quantization": any_r["model"].get("quantization"), "source": source, "threads": threads,
               "audio_s": secs, "p50_ms": _v(p50), "p90_ms": _v(m.get("latency_p90")),
               "chunk_p50_ms": _v(m.get("chunk_latency_p50", m.get("chunk_latency_est"))), "rtf": _v(m.get("rtf")),
               "peak_mem_mib": _v(mem), "size_mib": any_r["model"].get("size_bytes", 0) / 2**20}
        final = m.get("final_latency_p50", m.get("final_latency_est"))  # a cache-aware streaming artifact
        if final is not None:
            row["final_ms"] = final["value"]
        w = _wer_for(art, wer)
        if w is not None:
            row["wer"] = w
        row["budget"] = _budget(dev, row)
        rows.append(row)
    return rows


def _v(r):
    return None if r is None else r["value"]


def _wer_for(art: str, wer: dict[str, float] | None):
    if not wer:
        return None
    return wer.get(art, wer.get(Path(art).stem))


def _budget(dev: Device, row: dict) -> str:
    b, miss = dev.budgets, []
    lat = row["chunk_p50_ms"] if row["chunk_p50_ms"] is not None else row["p50_ms"]
    if b.max_rtf is not None and row["rtf"] is not None and row["rtf"] > b.max_rtf:
        miss.append(f"rtf {row['rtf']:.2f} > {b.max_rtf}")
    if b.max_latency_ms is not None and lat is not None and lat > b.max_latency_ms:
        miss.append(f"latency {lat:.0f} > {b.max_latency_ms:.0f} ms")
    if b.max_memory_mb is not None and row["peak_mem_mib"] is not None and row["peak_mem_mib"] > b.max_memory_mb:
        miss.append(f"memory {row['peak_mem_mib']:.0f} > {b.max_memory_mb:.0f} MiB")
    if not (b.max_rtf or b.max_latency_ms or b.max_memory_mb):
        return ""
    return "ok" if not miss else "; ".join(miss)


def pareto(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Rows no other row matches or beats on every key (all lower-is-better), in lexicographic
    order of `keys`. Of exact ties the first is kept. Sorting first means any row that dominates
    another comes before it, so one pass against the front so far is enough."""
    front: list[dict] = []
    for r in sorted(rows, key=lambda r: tuple(r[k] for k in keys)):
        if not any(all(f[k] <= r[k] for k in keys) for f in front):
            front.append(r)
    return front


def pareto_front(rows: list[dict], x: str = "p50_ms", y: str = "wer") -> list[dict]:
    """Rows not dominated in (x, y), both lower-is-better, sorted by x."""
    return pareto([r for r in rows if r.get(x) is not None and r.get(y) is not None], (x, y))


def pareto_plot(rows: list[dict], out_png: str | Path, title: str = "WER vs latency") -> Path | None:
    """Scatter WER vs p50 latency (one marker per source), Pareto front drawn; None without WER rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("wer") is not None and r.get("p50_ms") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    markers = {"measured-on-device": "o", "measured-on-host": "s", "estimated": "^"}
    for src in sorted({r["source"] for r in rows}):
        sel = [r for r in rows if r["source"] == src]
        ax.scatter([r["p50_ms"] for r in sel], [r["wer"] for r in sel], marker=markers.get(src, "x"), label=src)
        for r in sel:
            ax.annotate(r["artifact"], (r["p50_ms"], r["wer"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for src in {r["source"] for r in rows}:
        front = pareto_front([r for r in rows if r["source"] == src])
        if len(front) > 1:
            ax.plot([r["p50_ms"] for r in front], [r["wer"] for r in front], "--", lw=1, alpha=0.6)
    ax.set_xlabel("latency p50 (ms, per utterance)")
    ax.set_ylabel("WER")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
