"""The codebase's shape: no import cycles, no module over 400 lines (scripts/import_graph.py)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_no_import_cycles():
    g = _graph()
    assert g.cycles(g.edges(g.modules(ROOT))) == []


def test_cycle_finder_finds_a_cycle(tmp_path):
    g = _graph()
    pkg = tmp_path / "edgekd"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from edgekd.sub import b\n")  # lazy imports count
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from edgekd import a\n")
    assert g.cycles(g.edges(g.modules(tmp_path))) == [["edgekd.a", "edgekd.sub.b"]]


def test_no_module_over_400_lines():
    s = _graph().summary(ROOT)
    assert s["over_400"] == [], s["over_400"]


def test_cli_command_modules_never_import_the_root_app():
    g = _graph()
    e = g.edges(g.modules(ROOT))
    for m, deps in e.items():
        if m.startswith("edgekd.cli.") and m != "edgekd.cli.__main__":  # the entry point itself
            assert "edgekd.cli" not in deps, m
