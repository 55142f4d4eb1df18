"""Running tests/tools/hub_probe, which drives the Hub client
(include/hubfs/hub.h) from the command line, for the Hub client tests.
The binary is $HUBFS_BUILD_DIR/tests/tools/hub_probe (default build/)."""

import os
import subprocess
import time

import pytest

from conftest import ROOT

BUILD = os.environ.get("HUBFS_BUILD_DIR", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
PROBE = os.path.join(BUILD, "tests", "tools", "hub_probe")

needs_probe = pytest.mark.skipif(
    not os.access(PROBE, os.X_OK),
    reason="%s is not built (cmake --build with HUBFS_BUILD_TESTS=ON, "
           "or set HUBFS_BUILD_DIR)" % PROBE)

SANITIZER_WORDS = ("Sanitizer", "runtime error", "LeakSanitizer")


class Run:
    """One hub_probe run: exit status, stdout (bytes), stderr (text)."""

    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr.decode("utf-8", "replace")
        self.elapsed = elapsed

    @property
    def lines(self):
        return self.out.decode().splitlines()

    def stats(self):
        for line in self.err.splitlines():
            if line.startswith("stats: "):
                return {k: int(v) for k, v in
                        (kv.split("=") for kv in line[7:].split())}
        raise AssertionError("no stats in %r" % self.err)

    def __repr__(self):
        return "<Run rc=%d err=%r>" % (self.rc, self.err[-3000:])


def run_probe(args, token=None, opts=(), timeout=60):
    """Run hub_probe --stats OPTS ARGS; the token goes through the
    environment only, and must never come out."""
    env = dict(os.environ)
    cmd = [PROBE, "--stats"] + list(opts)
    if token is not None:
        env["HUB_PROBE_TOKEN"] = token
        cmd += ["--token-env", "HUB_PROBE_TOKEN"]
    cmd += [str(a) for a in args]
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=timeout)
    r = Run(p, time.time() - t0)
    for word in SANITIZER_WORDS:
        assert word not in r.err, r.err
    assert r.rc in (0, 1), r
    if token:
        assert token not in r.err, "the token leaked to stderr"
        assert token.encode() not in r.out
    return r
