#!/bin/bash
# The demo: a local Hub with a seeded model repo (branches, tags, LFS
# safetensors shards), shown through its API and through git + git-lfs.
# Runs offline on a fresh Debian 12 machine; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh >/dev/null

work=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
lh() { /usr/bin/python3 tests/localhub/localhub.py "$@"; }
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

lh seed-model --data "$work/data" demo/tiny-llama --shards 2 --shard-size 8MiB >/dev/null
lh serve --data "$work/data" --port 0 --ready-file "$work/ready" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do [ -s "$work/ready" ] && break; sleep 0.05; done
hub=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hub"])' "$work/ready")
echo "local Hub at $hub"

say "curl $hub/api/models/demo/tiny-llama/refs"
curl -s "$hub/api/models/demo/tiny-llama/refs" | /usr/bin/python3 -m json.tool
say "curl -sI $hub/demo/tiny-llama/resolve/v1.0/model-00001-of-00002.safetensors"
curl -sI "$hub/demo/tiny-llama/resolve/v1.0/model-00001-of-00002.safetensors" |
	grep -iE '^(HTTP|location|x-linked|x-repo-commit)' | sed 's/X-Signature=[^&]*/X-Signature=.../'
export HOME="$work/home" GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME" && git lfs install --skip-repo >/dev/null
say "git clone $hub/demo/tiny-llama && git lfs pull"
git clone -q "$hub/demo/tiny-llama" "$work/clone"
(cd "$work/clone" && git lfs pull && ls -l && git log --oneline --decorate --all | cat)
say "git diff --stat v1.0 main"
(cd "$work/clone" && git diff --stat v1.0 main | cat)
