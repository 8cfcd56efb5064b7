"""Per-device profiling: device profiles, the estimator, host-pinned and remote runs, tables.

Public entry point: `run_profile(ProfileOptions(...), artifacts, out_dir)` (edgekd/profile/stage.py).
Importing this package never imports torch.
"""

from edgekd.profile.stage import (MODES, ProfileOptions, device_table, pareto_front, pareto_plot,  # noqa: F401
                                  run_profile)
