"""The on-device benchmark runner (numpy + onnxruntime / LiteRT only; never torch).

`edgekd/bench/runner.py` is self-contained: copy that one file to a device and run
`python3 runner.py --model m.onnx --seconds 10`. For a cache-aware streaming model copy `stream.py`
beside it, for on-device WER (`--bundle DIR`) `labelled.py` (ssh_bench and the Docker image do).
`python -m edgekd.bench` runs the same code here.
"""

from pathlib import Path

RUNNER_PATH = Path(__file__).with_name("runner.py")  # the file that gets copied to a device
