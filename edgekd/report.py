"""The run report: `report.md` + a self-contained `report.html` (images embedded as data URIs).

The report knows no stage internals: it walks the stage manifests of a run in order and renders
each stage's metrics, its tables (outputs named `*.table.json`: a JSON list of row objects, or
`{"title", "rows", "note"}`) and its plots (outputs ending `.png`). A stage that wants something
in the report writes it as such an output. Measured and estimated numbers keep their `source`
column, so the report never mixes them silently.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

from edgekd.manifest import StageManifest
from edgekd.tables import columns_of, fmt, table_text

TITLES = {
    "teacher_eval": "Teacher accuracy",
    "synth": "Data (synthetic corpus)",
    "data": "Data (imported)",
    "pseudolabel": "Pseudo-labels, confidence and routing",
    "drift": "Drift: source vs target",
    "review": "Human review (Label Studio)",
    "distil": "Distillation",
    "compress": "Compression, export and verification",
    "profile": "Per-device profiles",
}


def _load_table(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):
        data = {"rows": data}
    data.setdefault("title", path.name.removesuffix(".table.json").replace("_", " "))
    return data


def _md_table(rows: list[dict]) -> str:
    return table_text(rows, markdown=True)


def _html_table(rows: list[dict]) -> str:
    if not rows:
        return "<p><em>(no rows)</em></p>"
    cols = columns_of(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:.9em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}"""


def run_report(run_dir: str | Path, out_dir: str | Path | None = None, title: str = "edgekd run report",
               stage_order: list[str] | None = None, summary: list[str] | None = None) -> dict[str, Path]:
    """Write report.md and report.html for the stages found under `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    found = {p.parent.name: p for p in run_dir.glob("*/manifest.json")}
    order = [s for s in (stage_order or []) if s in found] + sorted(s for s in found if s not in (stage_order or []))
    md = [f"# {title}\n", f"Run folder: `{run_dir}`\n"]
    hb = [f"<h1>{html.escape(title)}</h1><p class=note>Run folder: <code>{html.escape(str(run_dir))}</code></p>"]
    if summary:
        md.append("## Summary\n\n" + "\n".join(f"- {s}" for s in summary) + "\n")
        hb.append("<h2>Summary</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in summary) + "</ul>")
    for name in order:
        m = StageManifest.load(found[name])
        sdir = found[name].parent
        heading = TITLES.get(name, name)
        md.append(f"## {heading}\n")
        hb.append(f"<h2>{html.escape(heading)}</h2>")
        metrics = {k: v for k, v in m.metrics.items() if not isinstance(v, (dict, list))}
        if metrics:
            md.append(_md_table([metrics]))
            hb.append(_html_table([metrics]))
        for key, rel in m.outputs.items():
            path = sdir / rel
            if rel.endswith(".table.json") and path.exists():
                t = _load_table(path)
                md.append(f"**{t['title']}**\n\n" + _md_table(t["rows"]) + (f"\n_{t['note']}_\n" if t.get("note") else ""))
                hb.append(f"<h3>{html.escape(t['title'])}</h3>" + _html_table(t["rows"])
                          + (f"<p class=note>{html.escape(t['note'])}</p>" if t.get("note") else ""))
            elif rel.endswith(".png") and path.exists():
                data = base64.b64encode(path.read_bytes()).decode()
                # relative to report.md, so the run folder can be moved or zipped with its report
                md.append(f"![{key}]({Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()})\n")
                hb.append(f"<figure><img alt='{html.escape(key)}' src='data:image/png;base64,{data}'>"
                          f"<figcaption class=note>{html.escape(key)}</figcaption></figure>")
        md.append(f"<sub>stage took {m.timings.get('wall_s', 0):.1f} s · fingerprint {m.fingerprint[:12]}</sub>\n")
    md_path = out_dir / "report.md"
    html_path = out_dir / "report.html"
    md_path.write_text("\n".join(md), encoding="utf-8")
    html_path.write_text(f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                         f"<style>{CSS}</style></head><body>{''.join(hb)}</body></html>", encoding="utf-8")
    return {"md": md_path, "html": html_path}
