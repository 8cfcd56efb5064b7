"""Streaming latency in the profile: a table per device and a latency-vs-chunk-size plot.

Rows come from the records of cache-aware streaming artifacts (mode "streaming" with `chunk_ms`):
the runner's latency suite (measured-on-host / measured-on-device, edgekd/bench/stream.py) and the
estimator's (estimated, edgekd/profile/estimate.py), one row per artifact x source x threads. A
streaming export holds one chunk size per file, so the plot needs several files of one model.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.profile.devices import Device

COLUMNS = ["artifact", "quantization", "source", "threads", "chunk_ms", "chunk_p50_ms", "chunk_p95_ms",
           "chunk_p99_ms", "rtf", "first_partial_ms", "final_ms", "final_p95_ms"]
# row column <- measured metric, estimated metric (the runner's and the estimator's names)
METRICS = {"chunk_p50_ms": ("chunk_latency_p50", "chunk_latency_est"), "chunk_p95_ms": ("chunk_latency_p95", None),
           "chunk_p99_ms": ("chunk_latency_p99", None), "rtf": ("rtf", "rtf"),
           "first_partial_ms": ("first_partial_latency_p50", "first_partial_latency_est"),
           "final_ms": ("final_latency_p50", "final_latency_est"), "final_p95_ms": ("final_latency_p95", None)}
NOTE = ("Per-chunk compute, RTF = chunk compute / audio, first partial = audio start -> first text (synthetic "
        "features: the first window counts as text, a lower bound), final = end of speech -> final text (the "
        "windows still owed once the tail padding arrives). Definitions: edgekd/bench/stream.py.")


def streaming_rows(records: list[dict], device: Device) -> list[dict]:
    """One row per streaming artifact x source x threads on `device`, sorted by artifact then chunk."""
    groups: dict[tuple, dict[str, dict]] = {}
    for r in records:
        if r["device"] == device.name and r.get("mode") == "streaming" and r.get("chunk_ms") is not None:
            k = (r["model"].get("artifact") or r["model"]["name"], r["source"], r.get("threads"))
            groups.setdefault(k, {})[r["metric"]] = r
    rows = []
    for (art, source, threads), m in groups.items():
        est = source == "estimated"
        any_r = next(iter(m.values()))
        row = {"artifact": art, "quantization": any_r["model"].get("quantization"), "source": source,
               "threads": threads, "chunk_ms": float(any_r["chunk_ms"])}
        for col, (measured, estimated) in METRICS.items():
            r = m.get(estimated if est else measured)
            row[col] = None if r is None else r["value"]
        rows.append(row)
    return sorted(rows, key=lambda r: (r["source"], r["quantization"] or "", r["chunk_ms"], r["artifact"]))


def latency_plot(rows: list[dict], out_png: str | Path, device: Device) -> Path | None:
    """Per-chunk compute and end of speech -> final (ms), and RTF, against chunk size: one line per
    source x quantization x threads. None when no series has two chunk sizes."""
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        series.setdefault((r["source"], r["quantization"], r["threads"]), []).append(r)
    series = {k: sorted(v, key=lambda r: r["chunk_ms"]) for k, v in series.items()
              if len({r["chunk_ms"] for r in v}) >= 2}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_rtf) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    markers = {"measured-on-device": "o", "measured-on-host": "s", "estimated": "^"}
    for i, ((src, quant, threads), pts) in enumerate(sorted(series.items(), key=lambda kv: str(kv[0]))):
        color, label = f"C{i}", f"{src}, {quant}, {threads} thr"
        xs = [p["chunk_ms"] for p in pts]
        for col, style, what in (("chunk_p50_ms", "-", "chunk compute"), ("final_ms", "--", "end of speech -> final")):
            ys = [(x, p[col]) for x, p in zip(xs, pts) if p[col] is not None]
            if ys:
                ax.plot(*zip(*ys), style, marker=markers.get(src, "x"), color=color, label=f"{what}: {label}")
        ys = [(x, p["rtf"]) for x, p in zip(xs, pts) if p["rtf"] is not None]
        if ys:
            ax_rtf.plot(*zip(*ys), "-", marker=markers.get(src, "x"), color=color, label=label)
    if device.budgets.max_rtf is not None:
        ax_rtf.axhline(device.budgets.max_rtf, color="r", ls=":", lw=1, label=f"{device.name} budget")
    ticks = sorted({r["chunk_ms"] for v in series.values() for r in v})
    for a, ylabel in ((ax, "ms"), (ax_rtf, "RTF (compute / audio)")):
        a.set_xscale("log", base=2)
        a.set_xticks(ticks, [f"{t:g}" for t in ticks])
        a.set_xlabel("chunk (ms)")
        a.set_ylabel(ylabel)
        a.set_yscale("log")
        a.grid(alpha=0.3)
        a.legend(fontsize=6)
    ax.set_title(f"streaming latency vs chunk size: {device.name}", fontsize=9)
    ax_rtf.set_title("real-time factor", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
