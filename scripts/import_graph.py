"""Import cycles inside edgekd/ (every import statement counts, top-level or inside a function).

Usage: python3 scripts/import_graph.py [--json]

Prints each strongly connected component of the module import graph with more than one module
(an import cycle), the module count, line count and the largest module; exit 1 if any cycle.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = "edgekd"


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for p in sorted((root / PKG).rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The longest edgekd module that `name` (a.b.c or a.b.attr) names."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        is_pkg = p.name == "__init__.py"
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = m if is_pkg else m.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                targets = [f"{base}.{a.name}" for a in node.names] or [base]
            for t in targets:
                if not t.startswith(PKG):
                    continue
                r = _resolve(t, mods)
                # edgekd/__init__ (only __version__) is imported by all and imports nothing
                if r and r != m and r != PKG:
                    g[m].add(r)
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(out)


def summary(root: Path = ROOT) -> dict:
    mods = modules(root)
    lines = {m: len(p.read_text().splitlines()) for m, p in mods.items()}
    big = max(lines, key=lines.get)
    return {"modules": len(mods), "lines": sum(lines.values()), "largest": [big, lines[big]],
            "over_400": sorted(m for m, n in lines.items() if n > 400), "cycles": cycles(edges(mods))}


if __name__ == "__main__":
    s = summary()
    if "--json" in sys.argv:
        print(json.dumps(s, indent=1))
    else:
        print(f"{s['modules']} modules, {s['lines']} lines, largest {s['largest'][0]} ({s['largest'][1]} lines)")
        print(f"over 400 lines: {', '.join(s['over_400']) or 'none'}")
        print(f"{len(s['cycles'])} import cycle(s)")
        for c in s["cycles"]:
            print("  " + " <-> ".join(c))
    sys.exit(1 if s["cycles"] else 0)
