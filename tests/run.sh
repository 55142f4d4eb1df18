#!/bin/bash
# The whole test suite: set-up, build (plain and with ASan/UBSan), C unit
# tests and fuzz corpora under ctest, then the pytest suite (local Hub
# conformance, official JS client, git and git-lfs). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHUBFS_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHUBFS_WERROR=ON \
	-DHUBFS_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	ctest --test-dir build-asan --output-on-failure -j"$jobs"

export HUBFS_BUILD_DIR="$PWD/build"
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider --timeout=600 tests "$@"
