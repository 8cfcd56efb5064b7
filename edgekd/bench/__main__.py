"""`python -m edgekd.bench --model X.onnx --seconds 10` (same as running runner.py directly)."""

import sys

from edgekd.bench.runner import main

sys.exit(main())
