#!/bin/bash
# Reports curl's single-stream download rate from the local Hub's CDN origin.
# Usage: tests/bench/localhub_throughput.sh [SIZE_MIB] [RUNS]
set -euo pipefail
size_mib=${1:-1024}
runs=${2:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
lh="$root/tests/localhub/localhub.py"
work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/src"
head -c "$((size_mib << 20))" /dev/urandom > "$work/src/weights.bin"
/usr/bin/python3 "$lh" seed-dir --data "$work/data" bench/throughput "$work/src" >/dev/null
rm -rf "$work/src"
/usr/bin/python3 "$lh" serve --data "$work/data" --port 0 \
	--ready-file "$work/ready" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$work/ready" ] && break; sleep 0.05; done
hub=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hub"])' "$work/ready")
loc=$(curl -s -o /dev/null -w '%{redirect_url}' "$hub/bench/throughput/resolve/main/weights.bin")
best=0
for i in $(seq "$runs"); do
	rate=$(curl -s -o /dev/null -w '%{speed_download}' "$loc")
	echo "run $i: $(awk -v r="$rate" 'BEGIN { printf "%.2f GB/s", r / 1e9 }')"
	best=$(awk -v a="$best" -v b="$rate" 'BEGIN { print (b > a) ? b : a }')
done
awk -v r="$best" -v s="$size_mib" 'BEGIN { printf "curl single stream from the CDN origin, %d MiB: best %.2f GB/s\n", s, r / 1e9 }'
