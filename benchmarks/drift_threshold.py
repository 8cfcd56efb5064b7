"""Where drift detection starts: the drift verdict vs the synth drift strength knob.

Usage: python benchmarks/drift_threshold.py --teacher models/teacher/teacher.safetensors

For each strength, synthesizes a small target set (the same sentences and voices, only the
acoustic drift changes) and runs `edgekd drift` against a clean reference set of other
sentences; prints MMD p, the share of mel bands that differ, the mean band shift and the verdict.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--strengths", default="0,0.1,0.2,0.3,0.5,1.0")
    ap.add_argument("--hours", type=float, default=0.03)
    a = ap.parse_args()
    from edgekd.drift import DriftOptions, run_drift
    from edgekd.synth import SynthOptions, run_synth

    tmp = Path(tempfile.mkdtemp())
    run_synth(SynthOptions(seed=77, hours_source=a.hours, hours_target=0.0001, dev_fraction=0.0, test_fraction=0.5),
              tmp / "ref", progress=False)
    print(f"{'strength':>8s} {'MMD p':>8s} {'bands %':>8s} {'shift dB':>9s}  verdict")
    for s in [float(x) for x in a.strengths.split(",")]:
        run_synth(SynthOptions(seed=78, hours_source=0.0001, hours_target=a.hours, dev_fraction=0.0, test_fraction=0.5,
                               drift=s), tmp / f"d{s}", progress=False)
        r = run_drift(DriftOptions(), tmp / "ref/source/train.jsonl", tmp / f"d{s}/target/test.jsonl",
                      tmp / f"out{s}", a.teacher)
        print(f"{s:8.2f} {r['mmd']['p_value']:8.3f} {100 * r['ks']['fraction_significant']:8.1f} "
              f"{r['band_mean_shift_db']:9.2f}  {r['verdict']}")


if __name__ == "__main__":
    main()
