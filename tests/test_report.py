import json
import shutil
import subprocess

import pytest

from edgekd.manifest import StageManifest
from edgekd.report import run_report


def _fake_run(tmp_path):
    """Two stage folders with a metrics row, a table and a PNG plot, as stages write them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = tmp_path / "run"
    for stage, rows in [("distil", [{"model": "student", "wer": 0.12}]),
                        ("profile", [{"device": "rpi4", "p50_ms": 41.0, "source": "estimated"}])]:
        d = run / stage
        d.mkdir(parents=True)
        (d / "t.table.json").write_text(json.dumps({"title": f"{stage} table", "rows": rows, "note": "n"}))
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [1, 0])
        fig.savefig(d / "plot.png")
        plt.close(fig)
        StageManifest(stage=stage, config={}, outputs={"table": "t.table.json", "plot": "plot.png"},
                      metrics={"steps": 3, "wer": 0.1}).save(d)
    return run


def _md_rows(md: str) -> list[list[str]]:
    """The cells of every markdown table row (padding stripped)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ")]


def test_report_has_every_stage_table_and_embedded_plot(tmp_path):
    run = _fake_run(tmp_path)
    out = run_report(run, stage_order=["distil", "profile"], summary=["teacher WER 10 %"])
    md = out["md"].read_text()
    html = out["html"].read_text()
    assert md.index("Distillation") < md.index("Per-device profiles")
    assert ["rpi4", "41", "estimated"] in _md_rows(md)
    assert html.count("data:image/png;base64,") == 2
    assert "teacher WER 10 %" in html and "<table>" in html
    assert "src='/" not in html and 'src="/' not in html  # self-contained: no file references
    assert "](distil/plot.png)" in md and "](profile/plot.png)" in md  # relative: the folder can move


def test_report_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from PIL import Image

    def shot(html, name):
        png = tmp_path / f"{name}.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1000,1400",
                        html.resolve().as_uri()], check=True, capture_output=True, timeout=120)
        img = Image.open(png).convert("RGB")
        assert img.size == (1000, 1400)
        px = list(img.getdata())
        ink = sum(r + g + b < 384 for r, g, b in px) / len(px)  # text, table rules
        blue = sum(b > r + 60 and b > 120 for r, g, b in px)  # matplotlib's default line colour (#1f77b4)
        return ink, blue

    full_ink, full_blue = shot(run_report(_fake_run(tmp_path))["html"], "full")
    (tmp_path / "empty").mkdir()
    empty_ink, empty_blue = shot(run_report(tmp_path / "empty")["html"], "empty")
    assert full_ink > 3 * empty_ink and full_ink > 0.005, (full_ink, empty_ink)  # the tables and text rendered
    assert full_blue > 200 and empty_blue == 0, (full_blue, empty_blue)  # the embedded plots rendered
