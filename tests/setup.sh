#!/bin/bash
# Installs what building and testing hubfs needs on Debian 12: the build
# toolchain and libraries, fuse3, git and git-lfs, pytest, and the official
# JavaScript Hub client (from tests/js/package-lock.json). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config git git-lfs fuse3 attr curl man-db
	util-linux-extra
	libfuse3-dev libcurl4-openssl-dev libsqlite3-dev libjansson-dev libssl-dev
	clang libclang-rt-14-dev
	systemd dpkg-dev file
	python3 python3-pytest python3-pytest-timeout)
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ -f tests/js/package-lock.json ]; then
	(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
