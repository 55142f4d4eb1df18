#!/bin/bash
# The demo: build hubfs, start the bundled local Hub with a seeded model
# repository (branches, tags, LFS safetensors shards), mount it with hubfs
# and look around, then mount it writable and commit a checkpoint.  Runs
# offline on a fresh Debian 12 machine, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

work=$(mktemp -d)
pid=
cleanup() {
	mountpoint -q "$work/mnt" && fusermount3 -u "$work/mnt"
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

/usr/bin/python3 tests/localhub/localhub.py seed-model --data "$work/data" \
	demo/tiny-llama --shards 2 --shard-size 8MiB >/dev/null
/usr/bin/python3 tests/localhub/localhub.py serve --data "$work/data" \
	--port 0 --ready-file "$work/ready" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$work/ready" ] && break; sleep 0.05; done
hub=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hub"])' "$work/ready")
echo "local Hub serving demo/tiny-llama at $hub"

mkdir "$work/mnt"
cd "$work"
say "hubfs demo/tiny-llama mnt -o endpoint=$hub,cache_dir=$work/cache"
"$OLDPWD/build/hubfs" demo/tiny-llama mnt -o "endpoint=$hub,cache_dir=$work/cache"
say "ls -l mnt"
ls -l mnt
say "cat mnt/config.json"
cat mnt/config.json
say "head -c 120 mnt/model-00001-of-00002.safetensors | tail -c 100   # a safetensors header"
head -c 120 mnt/model-00001-of-00002.safetensors | tail -c 100; echo
say "getfattr -d mnt/model-00001-of-00002.safetensors"
getfattr -d mnt/model-00001-of-00002.safetensors
say "ls mnt/.revisions"
ls mnt/.revisions
say "diff -r mnt/.revisions/v1.0 mnt/.revisions/main"
diff -r mnt/.revisions/v1.0 mnt/.revisions/main || true
say "sha256sum mnt/model-00002-of-00002.safetensors mnt/.revisions/v1.0/model-00002-of-00002.safetensors"
sha256sum mnt/model-00002-of-00002.safetensors mnt/.revisions/v1.0/model-00002-of-00002.safetensors
say "fusermount3 -u mnt"
fusermount3 -u mnt

# Writing: the same branch, mounted with a token that may write to it.
say "HF_TOKEN=hf_localhub_demo_write hubfs demo/tiny-llama mnt -o endpoint=$hub,cache_dir=$work/cache"
HF_TOKEN=hf_localhub_demo_write "$OLDPWD/build/hubfs" demo/tiny-llama mnt \
	-o "endpoint=$hub,cache_dir=$work/cache"
say "mkdir -p mnt/checkpoints/step-100 && echo '{\"step\": 100}' > mnt/checkpoints/step-100/trainer_state.json"
mkdir -p mnt/checkpoints/step-100
echo '{"step": 100}' > mnt/checkpoints/step-100/trainer_state.json
say "head -c 4M /dev/urandom > mnt/checkpoints/step-100/optimizer.bin"
head -c 4M /dev/urandom > mnt/checkpoints/step-100/optimizer.bin
say "sync mnt   # returns once the commit is on the branch"
sync mnt
say "getfattr -n user.hubfs.commit mnt; curl $hub/api/models/demo/tiny-llama/commits/main   # the newest commit"
getfattr -n user.hubfs.commit mnt
curl -s "$hub/api/models/demo/tiny-llama/commits/main" | /usr/bin/python3 -c \
	'import json,sys; c=json.load(sys.stdin)[0]; print(c["id"][:12], c["title"])'
say "fusermount3 -u mnt"
fusermount3 -u mnt
