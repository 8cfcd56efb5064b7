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


def test_report_has_every_stage_table_and_embedded_plot(tmp_path):
    run = _fake_run(tmp_path)
    out = run_report(run, stage_order=["distil", "profile"], summary=["teacher WER 10 %"])
    md = out["md"].read_text()
    html = out["html"].read_text()
    assert md.index("Distillation") < md.index("Per-device profiles")
    assert "| rpi4 | 41 | estimated |" in md
    assert html.count("data:image/png;base64,") == 2
    assert "teacher WER 10 %" in html and "<table>" in html
    assert "src='/" not in html and 'src="/' not in html  # self-contained: no file references
    assert "](distil/plot.png)" in md and "](profile/plot.png)" in md  # relative: the folder can move


def test_report_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    out = run_report(_fake_run(tmp_path))
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1000,1400",
                    out["html"].resolve().as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert img.size == (1000, 1400) and hi - lo > 100  # rendered content, not a blank page
