"""`python -m bench [--full] [--only rollout|scale]`: every benchmark, tables and plots.

The default sizes finish in a few minutes on 2 cores; `--full` runs the larger ones
(see `python -m bench.rollout --help` and `python -m bench.scale --help` for more).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from bench.rollout.cli import main as rollout_main
from bench.scale import main as scale_main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the full sizes (much longer)")
    parser.add_argument("--only", choices=("rollout", "scale"))
    args = parser.parse_args(argv)
    extra = ["--full"] if args.full else []
    started = time.perf_counter()
    code = 0
    if args.only in (None, "rollout"):
        code |= rollout_main(extra)
        print()
    if args.only in (None, "scale"):
        code |= scale_main(extra)
    print(f"\nbenchmarks done in {time.perf_counter() - started:.0f} s; plots and figures in "
          "bench/out/; measured figures and their limits: bench/README.md")
    return code


if __name__ == "__main__":
    sys.exit(main())
