#!/bin/bash
# The whole test suite, on Debian 12 as root:
#   1. set-up (packages, the JS client);
#   2. a release build and an ASan+UBSan build, each with its ctest run
#      (C unit tests, command line, headers, fuzz corpora);
#   3. a clang build of the whole tree with -Werror, so that clang's
#      thread-safety analysis checks every lock annotation, then each fuzz
#      target under libFuzzer for a short while;
#   4. the mount tests against the ASan+UBSan daemon;
#   5. the whole pytest suite against the release build, last, so that the
#      run ends with pytest's summary line.
# Extra arguments go to the final pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh

jobs=$(nproc)
fuzz_seconds=${HUBFS_FUZZ_SECONDS:-15}

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHUBFS_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHUBFS_WERROR=ON \
	-DHUBFS_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs"
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
ctest --test-dir build-asan --output-on-failure -j"$jobs"

CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug \
	-DHUBFS_WERROR=ON -DHUBFS_BUILD_FUZZERS=ON \
	-DHUBFS_SANITIZE=address,undefined >/dev/null
cmake --build build-fuzz -j"$jobs"
if [ "$fuzz_seconds" -gt 0 ]; then
	for f in build-fuzz/tests/fuzz/*_fuzzer; do
		name=$(basename "$f" _fuzzer)
		work=$(mktemp -d)
		echo "fuzz: $name for ${fuzz_seconds}s"
		if ! "$f" -max_total_time="$fuzz_seconds" "$work" \
			"tests/fuzz/corpus/$name" >"$work.log" 2>&1; then
			tail -n 60 "$work.log"
			exit 1
		fi
		tail -n 1 "$work.log"
		rm -rf "$work" "$work.log"
	done
fi

HUBFS_CHECKPOINT_MIB=768 HUBFS_BUILD_DIR="$PWD/build-asan" \
	/usr/bin/python3 -m pytest -q \
	-p no:cacheprovider --timeout=600 tests/hubfs

export HUBFS_BUILD_DIR="$PWD/build"
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider --timeout=600 tests "$@"
