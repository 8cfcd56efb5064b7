"""What a fit leaves behind: per device the winner with its margins, the Pareto front (table +
plot), host-pinned checks, the winner's exported and verified artifact; and the proxy-vs-final rank
correlation. `candidates.json` holds every candidate row (costed, fits?, WER when built)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from edgekd.atomic import atomic_write
from edgekd.config import to_dict
from edgekd.fit.budget import Budget
from edgekd.fit.build import export_streaming_winner, variant_checkpoint, variant_onnx
from edgekd.fit.space import Variant
from edgekd.manifest import StageManifest
from edgekd.tables import table_text

ESTIMATE_BAND = 0.30  # the estimator's validated error band (README, estimator validation): closer = measure


def spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:  # undefined: too few, or one side all ties
        return None
    return round(float(spearmanr(a, b).statistic), 3)


def pareto(rows: list[dict], keys=("wer", "rtf", "memory_mb", "size_mb")) -> list[dict]:
    """The fit's front: no other row matches or beats it on WER and every budgeted cost; by RTF."""
    from edgekd.profile.stage import pareto as nondominated

    return sorted(nondominated(rows, keys), key=lambda r: r["rtf"])


def pick_winner(ok: list[dict], keys: tuple[str, ...], b: Budget, measured_rtf=None) -> tuple[dict | None, list[str]]:
    """The best candidate under budget by `keys` (WER first, then each cost), and the ones passed
    over: a measured figure overrides the estimate, so in rank order a candidate whose measured RTF
    (`measured_rtf(row)`, host-pinned at the device's threads) is over the budget gives way to the next."""
    vetoed = []
    for r in sorted(ok, key=lambda r: tuple(r[k] for k in keys)):
        if measured_rtf is not None and b.rtf is not None and measured_rtf(r) > b.rtf:
            vetoed.append(r["variant"])
            continue
        return r, vetoed
    return None, vetoed


def _near_budget(r: dict, b: Budget, band: float) -> bool:
    return any(abs(1 - r[m] / v) <= band for m, v in b.limits().items())


def _plot(rows: list[dict], front: list[dict], winner: dict | None, b: Budget, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for fits, mk, label in ((True, "o", "under budget"), (False, "x", "over budget"),
                            ("measured", "s", "over budget when measured on host")):
        sel = [r for r in rows if (r.get("over_budget_measured") and fits == "measured") or
               (not r.get("over_budget_measured") and r["fits"] == fits)]
        if sel:
            ax.scatter([r["rtf"] for r in sel], [r["wer"] * 100 for r in sel], marker=mk, label=label)
    ax.plot([r["rtf"] for r in front], [r["wer"] * 100 for r in front], "k--", lw=1, label="Pareto front")
    if winner:
        ax.scatter([winner["rtf"]], [winner["wer"] * 100], marker="*", s=220, c="gold", edgecolors="k", label="winner")
    if b.rtf:
        ax.axvline(b.rtf, color="r", lw=1, label=f"RTF budget {b.rtf}")
    ax.set_xlabel(f"estimated RTF on {b.device} (threads: {b.threads or 'device default'})")
    ax.set_ylabel("test WER % (" + ("sherpa-onnx online" if b.streaming else "onnxruntime") + ")")
    ax.set_title(f"fit: {b.device}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_results(out: Path, opts, budgets: list[Budget], rows: list[dict], proxy: dict, full: dict,
                  chosen: list[str], measure, devices: dict, soft_targets, test_manifest, t0: float, log) -> Path:
    from edgekd.export import ExportOptions, run_export

    metrics: dict = {}
    md = []
    for b in budgets:
        dev_rows = [r for r in rows if r["device"] == b.device]
        scored = [r for r in dev_rows if r["wer"] is not None]
        ok = [r for r in scored if r["fits"]]
        # ties broken on every budgeted cost, so the winner is never dominated: it is on the front
        keys = ("wer", "rtf", "memory_mb", "size_mb") + (("latency_ms",) if b.streaming else ())
        measured: dict[str, dict] = {}

        def measured_rtf(r: dict) -> float:
            """On the device when it is reachable (ssh), else host-pinned at its threads."""
            if r["variant"] not in measured:
                v = Variant(r["arch"], r["prune"], r["precision"], r.get("chunk_ms", 0))
                measured[r["variant"]] = measure(devices[b.device], variant_onnx(v, out / "variants"), b.threads,
                                                 opts.seconds)
            m = measured[r["variant"]]
            return m["on_device"]["rtf"] if "on_device" in m else m["rtf"]

        winner, vetoed = pick_winner(ok, keys, b, measured_rtf if measure else None)
        if measure and winner:
            for r in [winner] + [r for r in ok if r is not winner and _near_budget(r, b, ESTIMATE_BAND)]:
                measured_rtf(r)
        front = pareto([r for r in scored if r["variant"] not in vetoed], keys)  # streaming: latency is a key
        for r in dev_rows:
            if r["variant"] in measured:
                r["rtf_measured_on_host"] = measured[r["variant"]]["rtf"]
                if "on_device" in measured[r["variant"]]:
                    r["rtf_measured_on_device"] = measured[r["variant"]]["on_device"]["rtf"]
                r["over_budget_measured"] = r["variant"] in vetoed
        _plot(scored, front, winner, b, out / f"pareto-{b.device}.png")
        info = {"budget": b.limits(), "winner": winner and winner["variant"], "candidates": len(dev_rows),
                "under_budget": sum(r["fits"] for r in dev_rows), "scored": len(scored),
                "pareto": [r["variant"] for r in front], "measured_on_host": measured,
                "over_budget_measured": vetoed}
        if winner:
            info |= {"wer": winner["wer"], "estimate": {k: winner[k] for k in ("rtf", "memory_mb", "size_mb",
                                                                              "latency_ms") if k in winner},
                     "margins": b.margins(winner)}
            if winner["variant"] in measured:
                m = measured[winner["variant"]]
                info["measured_meets_rtf"] = b.rtf is None or m["rtf"] <= b.rtf
                if "on_device" in m:
                    info["measured_on_device_meets_rtf"] = b.rtf is None or m["on_device"]["rtf"] <= b.rtf
            wv = Variant(winner["arch"], winner["prune"], winner["precision"], winner.get("chunk_ms", 0))
            ckpt = variant_checkpoint(wv, out / "variants")
            q = () if winner["precision"] == "fp32" else (winner["precision"],)
            exp = out / f"winner-{b.device}"
            tag = exp / "variant.txt"  # whose export this is: a rerun may pick another winner
            if exp.exists() and (not tag.exists() or tag.read_text() != winner["variant"]):
                shutil.rmtree(exp)
            same = next((d for d, v in metrics.items() if isinstance(v, dict) and v.get("winner") == winner["variant"]
                         and (out / f"winner-{d}" / "manifest.json").exists()), None)
            if same and not (exp / "manifest.json").exists():  # another device's winner: the same artifact
                shutil.copytree(out / f"winner-{same}", exp)
            if not (exp / "manifest.json").exists():
                if wv.chunk_ms:
                    export_streaming_winner(ckpt, wv.chunk_ms, exp, test_manifest, opts.verify_utts)
                else:
                    run_export(ExportOptions(quantize=q, tflite=(), verify_utts=opts.verify_utts, bundle_utts=0),
                               ckpt, exp, test_manifest=test_manifest, progress=False)
                atomic_write(tag, winner["variant"])
            info["export"] = {"dir": str(exp), "failed_checks": StageManifest.load(exp).metrics["failed"]}
        metrics[b.device] = info
        md.append(f"### {b.device}: budget {b.limits()}\n")
        md.append(f"winner: **{info['winner']}**" + (f", WER {winner['wer'] * 100:.1f} %, margins "
                                                      f"{info['margins']}" if winner else " (none scored)") + "\n")
        table = [{"variant": r["variant"], "WER %": round(r["wer"] * 100, 1),
                  **({"latency ms est": round(r["latency_ms"], 1)} if b.streaming else {}),
                  "CER %": round(r["cer"] * 100, 1) if r.get("cer") is not None else None,
                  "RTF est": round(r["rtf"], 4),
                  "memory MB est": round(r["memory_mb"], 1), "size MB": round(r["size_mb"], 2),
                  "under budget": "yes" if r["fits"] else "no", "winner": "yes" if r is winner else "",
                  "RTF measured-on-host": round(measured[r["variant"]]["rtf"], 4) if r["variant"] in measured else None,
                  **({"RTF measured-on-device": round(r["rtf_measured_on_device"], 4) if "rtf_measured_on_device" in r
                      else None} if any("on_device" in m for m in measured.values()) else {})}
                 for r in front]
        atomic_write(out / f"pareto-{b.device}.table.json", json.dumps(
            {"title": f"fit: Pareto front on {b.device} (budget {b.limits()}), estimated unless marked", "rows": table},
            indent=1))
        md.append(table_text(table, markdown=True) + "\n")
    atomic_write(out / "candidates.json", json.dumps({"title": "fit candidates", "rows": rows}, indent=1))
    fully = [n for n in chosen if n in proxy and full.get(n)]
    # The same metric at both ends (dev CER): early on every WER is ~100 % and ranks nothing.
    rho = spearman([proxy[n].get("cer", 1.0) for n in fully], [full[n].get("cer", 1.0) for n in fully])
    metrics["proxy_vs_final_spearman"] = {"rho": rho, "n": len(fully),
                                          "proxy_dev_cer": {n: proxy[n].get("cer") for n in fully},
                                          "final_dev_cer": {n: full[n].get("cer") for n in fully},
                                          "final_dev_wer": {n: full[n].get("wer") for n in fully}}
    md.append(f"proxy (dev CER after {opts.proxy_steps} steps) vs final (dev CER after {opts.full_steps}) rank: "
              f"Spearman rho {rho} over {len(fully)} architectures\n")
    atomic_write(out / "fit.md", "\n".join(md))
    m = StageManifest(stage="fit", config={**to_dict(opts), "budgets": [to_dict(b) for b in budgets]},
                      outputs={"candidates": "candidates.json", "md": "fit.md",
                               **{f"pareto-{b.device}": f"pareto-{b.device}.png" for b in budgets},
                               **{f"pareto-{b.device}-table": f"pareto-{b.device}.table.json" for b in budgets}},
                      metrics=metrics, timings={"wall_s": round(time.time() - t0, 1)})
    m.add_inputs(Path(soft_targets) / "meta.json", test_manifest)
    log(f"fit: done in {time.time() - t0:.0f} s; " + "; ".join(f"{d}: {v['winner']}" for d, v in metrics.items()
                                                             if isinstance(v, dict) and "winner" in v))
    return m.save(out)
