"""`python -m bench.rollout [--full] [--sizes 15x5,200x20] [--seed N] [--no-plot]`."""

from __future__ import annotations

import sys

from bench.rollout.cli import main

if __name__ == "__main__":
    sys.exit(main())
