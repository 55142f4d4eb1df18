#!/bin/bash
# The hubfs benchmark suite: one command, as root, on Debian 12.
#
#   sudo tests/bench/run.sh            # full run: writes docs/PERFORMANCE.md
#   sudo tests/bench/run.sh --smoke    # tiny sizes, one run (what CI runs)
#   tests/bench/run.sh --help          # every option
#
# It builds hubfs in release mode (outside the source tree), compiles the
# suite's helpers, seeds the local Hub deterministically, runs every
# scenario several times and writes the report.  See docs/PERFORMANCE.md.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$@"
