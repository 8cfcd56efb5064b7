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
    """Per-chunk compute (solid) and end of speech -> final (dashed), in ms, and RTF against chunk
    size: one colour per source x quantization x threads. None when no series has two chunk sizes."""
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        series.setdefault((r["source"], r["quantization"], r["threads"]), []).append(r)
    series = {k: sorted(v, key=lambda r: r["chunk_ms"]) for k, v in sorted(series.items(), key=lambda kv: str(kv[0]))
              if len({r["chunk_ms"] for r in v}) >= 2}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, (ax, ax_rtf) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    markers = {"measured-on-device": "o", "measured-on-host": "s", "estimated": "^"}
    for i, ((src, quant, threads), pts) in enumerate(series.items()):
        style = dict(marker=markers.get(src, "x"), color=f"C{i}")
        for col, ls, a in (("chunk_p50_ms", "-", ax), ("final_ms", "--", ax), ("rtf", "-", ax_rtf)):
            xy = [(p["chunk_ms"], p[col]) for p in pts if p[col] is not None]
            if xy:
                a.plot(*zip(*xy), ls, label=f"{src}, {quant}, {threads} thr" if a is ax_rtf else None, **style)
    if device.budgets.max_rtf is not None:
        ax_rtf.axhline(device.budgets.max_rtf, color="r", ls=":", lw=1, label=f"{device.name} RTF budget")
    ticks = sorted({r["chunk_ms"] for v in series.values() for r in v})
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for a, ylabel in ((ax, "ms"), (ax_rtf, "RTF (compute / audio)")):
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xticks(ticks)
        a.xaxis.set_major_formatter(plain)
        a.xaxis.set_minor_formatter(NullFormatter())
        a.yaxis.set_major_formatter(plain)
        a.set_xlabel("chunk (ms)")
        a.set_ylabel(ylabel)
        a.grid(alpha=0.3, which="both")
    ax.yaxis.set_minor_formatter(plain)  # ms spans a decade or two: label the minor ticks too
    ax.set_title(f"{device.name}: per-chunk compute p50 (solid), end of speech -> final (dashed)", fontsize=9)
    ax_rtf.set_title("real-time factor", fontsize=9)
    fig.legend(*ax_rtf.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    out_png = Path(out_png)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
