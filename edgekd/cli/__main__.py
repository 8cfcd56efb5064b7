"""`python -m edgekd.cli ...`: the same as the `edgekd` script."""

from edgekd.cli import main

main()
