"""Tables for people: one helper renders rows as a terminal table or a markdown table (rich).

`table_text(rows)` -> a rich box table for the CLI; `table_text(rows, markdown=True)` -> a GitHub
markdown table (rich's MARKDOWN box) for report.md, verify.md and model cards. Cells go through
`fmt` (floats to 4 significant digits, None to blank) and are never read as rich markup.
"""

from __future__ import annotations

import io
import json
from typing import Any, Iterable


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)[:120]
    return "" if v is None else str(v)


def columns_of(rows: Iterable[dict]) -> list[str]:
    """Every key of every row, in first-seen order."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def table_text(rows: list[dict], columns: list[str] | None = None, *, markdown: bool = False,
               title: str | None = None) -> str:
    """`rows` as a table: markdown (one line per row) or a terminal box table."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cols = columns or columns_of(rows)
    if markdown and not rows:
        return "_(no rows)_\n"
    t = Table(box=box.MARKDOWN if markdown else box.SIMPLE_HEAD, title=None if markdown else title,
              show_edge=markdown, pad_edge=True)
    for c in cols:
        t.add_column(Text(c), no_wrap=markdown, overflow="ignore" if markdown else "fold")
    for r in rows:
        cells = [fmt(r.get(c)).replace("\n", " ") for c in cols]
        t.add_row(*[Text(v.replace("|", "\\|") if markdown else v) for v in cells])
    buf = io.StringIO()
    Console(file=buf, width=100_000 if markdown else 160, color_system=None, no_color=True,
            highlight=False, legacy_windows=False).print(t)
    lines = [line.rstrip() for line in buf.getvalue().splitlines()]
    text = "\n".join(line for line in lines if line.strip()) if markdown else "\n".join(lines).strip("\n")
    return (f"**{title}**\n\n" if markdown and title else "") + text + "\n"
