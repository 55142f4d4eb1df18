#!/bin/sh
# End-to-end checks of the hubfs command line: exit status, the exact
# error line, and --print-config output.  Each run gets a clean
# environment with HOME in a temporary directory.
#
# usage: test_cli.sh PATH_TO_HUBFS
set -u

hubfs=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home"
failures=0
extra_env=

if [ "$(id -u)" = 0 ]; then
	default_cache=/var/cache/hubfs
else
	default_cache=$tmp/home/.cache/hubfs
fi

fail() {
	echo "FAIL: $case_name: $*"
	failures=$((failures + 1))
}

# run STATUS ARGS...: run hubfs with $extra_env and check its exit status.
run() {
	expected=$1
	shift
	# shellcheck disable=SC2086  # extra_env is a list of VAR=VALUE words
	env -i HOME="$tmp/home" PATH=/usr/bin:/bin \
		ASAN_OPTIONS="${ASAN_OPTIONS:-}" \
		UBSAN_OPTIONS="${UBSAN_OPTIONS:-}" $extra_env \
		"$hubfs" "$@" >"$tmp/out" 2>"$tmp/err"
	status=$?
	[ "$status" = "$expected" ] ||
		fail "exit status $status, not $expected: $(cat "$tmp/err")"
}

# expect_stderr LINE: stderr is exactly LINE.
expect_stderr() {
	printf '%s\n' "$1" >"$tmp/want"
	cmp -s "$tmp/want" "$tmp/err" ||
		fail "stderr is '$(cat "$tmp/err")', expected '$1'"
}

# expect_stdout: stdout is exactly the text on standard input.
expect_stdout() {
	cat >"$tmp/want"
	if ! cmp -s "$tmp/want" "$tmp/out"; then
		fail "stdout differs:"
		diff "$tmp/want" "$tmp/out"
	fi
}

expect_stderr_empty() {
	[ -s "$tmp/err" ] && fail "stderr: $(cat "$tmp/err")"
}

usage_error() {
	expect_stderr "hubfs: $1 (see hubfs --help)"
	[ -s "$tmp/out" ] && fail "stdout not empty"
}

case_name=version
run 0 --version
printf 'hubfs %s\n' "${2:-0.1.0}" | expect_stdout
expect_stderr_empty

case_name=help
run 0 --help
for word in revision= endpoint= token_file= cache_dir= cache_size= ' ro ' \
	' rw ' allow_other uid= gid= refresh= ' debug ' ' foreground ' \
	max_read= default_permissions _netdev nofail x-... comment= \
	--print-config '-o OPT' ' -f ' ' -d ' --version 'Exit status'; do
	grep -qF -- "$word" "$tmp/out" || fail "help does not mention '$word'"
done
expect_stderr_empty

case_name=no_arguments
run 2
usage_error "missing SOURCE and MOUNTPOINT"

case_name=missing_mountpoint
run 2 org/m
usage_error "missing MOUNTPOINT"

case_name=extra_argument
run 2 org/m /mnt extra
usage_error "unexpected argument 'extra'"

case_name=unknown_long_option
run 2 --bogus org/m /mnt
usage_error "unknown option '--bogus'"

case_name=unknown_short_option
run 2 org/m /mnt -xf
usage_error "unknown option '-x'"

case_name=option_without_argument
run 2 org/m /mnt -o
usage_error "option '-o' needs an argument"

case_name=unknown_mount_option
run 2 -o ro,bogus org/m /mnt
usage_error "unknown mount option 'bogus'"

case_name=bad_source
run 2 dataset/org/d /mnt
usage_error "invalid source 'dataset/org/d': \
use the plural type prefix 'datasets/'"

case_name=revision_conflict
run 2 org/m@main /mnt -o revision=dev
usage_error "invalid source 'org/m@main': \
conflicting revisions 'dev' and 'main'"

case_name=missing_token_file
run 1 -o token_file=/nonexistent/token org/m /mnt
expect_stderr "hubfs: token_file=/nonexistent/token: no such file"

case_name=bad_endpoint
extra_env="HF_ENDPOINT=ftp://mirror"
run 1 org/m /mnt
expect_stderr "hubfs: HF_ENDPOINT 'ftp://mirror': \
expected an http:// or https:// URL with a host"
extra_env=

# Nothing listens on port 9 of the loopback: the mount must fail at once,
# with one line naming the endpoint, before touching the mount point.
case_name=mount_unreachable
run 1 -f -o endpoint=http://127.0.0.1:9,cache_dir=$tmp/cache org/m /mnt
expect_stderr "hubfs: cannot reach http://127.0.0.1:9: Couldn't connect to server"

case_name=double_dash
run 1 -o ro,endpoint=http://127.0.0.1:9,cache_dir=$tmp/cache -- org/m /mnt
expect_stderr "hubfs: cannot reach http://127.0.0.1:9: Couldn't connect to server"

case_name=print_config_defaults
run 0 --print-config org/m /mnt
expect_stdout <<OUT
type=model
namespace=org
name=m
revision=<default>
endpoint=https://huggingface.co
token=<none>
token_source=none (no token file at $tmp/home/.cache/huggingface/token)
token_file_exposed=no
cache_dir=$default_cache
cache_size=10737418240
ro=no
allow_other=no
uid=<unset>
gid=<unset>
refresh=30
debug=no
foreground=no
mountpoint=/mnt
fuse_opts=<none>
log_level=notice
metrics_file=<none>
OUT
expect_stderr_empty

# mount(8) order: operands first, then -o, plus mount's own -s -n -v -t.
case_name=print_config_mount_order
extra_env="HF_TOKEN=hf_clisecretclisecret HF_ENDPOINT=http://127.0.0.1:9/"
extra_env="$extra_env POSIXLY_CORRECT=1"
run 0 hf://datasets/org/d@feature%2Fx /mnt/d -o ro,cache_size=1G,_netdev \
	-n -s -v -t hubfs -o uid=5,gid=6,max_read=65536,cache_dir=/c \
	-d --print-config
expect_stdout <<OUT
type=dataset
namespace=org
name=d
revision=feature/x
endpoint=http://127.0.0.1:9
token=<set>
token_source=environment variable HF_TOKEN
token_file_exposed=no
cache_dir=/c
cache_size=1073741824
ro=yes
allow_other=no
uid=5
gid=6
refresh=30
debug=yes
foreground=yes
mountpoint=/mnt/d
fuse_opts=max_read=65536
log_level=debug
metrics_file=<none>
OUT
grep -q clisecret "$tmp/out" "$tmp/err" && fail "the token was printed"
extra_env=

case_name=print_config_token_file
printf 'hf_filesecretfilesecret\n' >"$tmp/token"
chmod 0644 "$tmp/token"
run 0 --print-config -oallow_other,token_file="$tmp/token",refresh=0 \
	spaces/o/s /m -f
grep -qx "token=<set>" "$tmp/out" || fail "token not set"
grep -qx "token_source=token file $tmp/token" "$tmp/out" || fail "token_source"
grep -qx "token_file_exposed=yes" "$tmp/out" || fail "token_file_exposed"
grep -qx "allow_other=yes" "$tmp/out" || fail "allow_other"
grep -qx "refresh=0" "$tmp/out" || fail "refresh"
grep -qx "foreground=yes" "$tmp/out" || fail "foreground"
grep -qx "debug=no" "$tmp/out" || fail "debug"
grep -q filesecret "$tmp/out" "$tmp/err" && fail "the token was printed"

if [ "$failures" -ne 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "all command-line checks passed"
