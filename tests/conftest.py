"""Shared pytest fixtures: a local Hub server started per test module (or
per test, through the factory), torn down by pid even when a test fails."""

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCALHUB = os.path.join(ROOT, "tests", "localhub", "localhub.py")
PYTHON = "/usr/bin/python3"
# The block cache's block (HUBFS_CACHE_BLOCK_SIZE in include/hubfs/cache.h).
BLOCK = 256 << 10
GIT_TIMEOUT = 90

# Users and tokens of the test server.
WRITE = "hf_alice_write_0123456789"
READ = "hf_alice_read_0123456789"
BOB = "hf_bob_write_0123456789"
CAROL = "hf_carol_read_0123456789"
TEST_CONFIG = {
    "users": {"alice": {"fullname": "Alice", "orgs": ["tester", "acme"]},
              "bob": {"fullname": "Bob", "orgs": []},
              "carol": {"fullname": "Carol", "orgs": []}},
    "tokens": [
        {"token": WRITE, "user": "alice", "role": "write", "name": "w"},
        {"token": READ, "user": "alice", "role": "read", "name": "r"},
        {"token": BOB, "user": "bob", "role": "write", "name": "b"},
        {"token": CAROL, "user": "carol", "role": "read", "name": "c"},
    ],
}


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


def http_request(url, method="GET", headers=None, body=None, timeout=30):
    """One request, no redirect following; returns Response."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    path = u.path + ("?" + u.query if u.query else "")
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        return Response(r.status, hdrs, data)
    finally:
        conn.close()


def real_bytes(h, repo, path):
    """A file of @repo's main branch as the Hub serves it (following the
    redirect of an LFS file to the CDN)."""
    r = h.get("/%s/resolve/main/%s" % (repo, path))
    return http_request(r.header("Location")).body if r.status == 302 \
        else r.body


class LocalHub:
    def __init__(self, workdir, args=(), config=None):
        self.workdir = workdir
        self.data = os.path.join(workdir, "data")
        self.ready = os.path.join(workdir, "ready.json")
        self.logfile = os.path.join(workdir, "requests.jsonl")
        self.cfgfile = os.path.join(workdir, "config.json")
        os.makedirs(self.data, exist_ok=True)
        with open(self.cfgfile, "w") as f:
            json.dump(config or TEST_CONFIG, f)
        self.args = list(args)
        self.proc = None

    # --- lifecycle -------------------------------------------------------
    def start(self, timeout=20):
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        self.stderr = open(os.path.join(self.workdir, "server.err"), "ab")
        self.proc = subprocess.Popen(
            [PYTHON, LOCALHUB, "serve", "--data", self.data, "--port", "0",
             "--config", self.cfgfile, "--ready-file", self.ready,
             "--request-log", self.logfile] + self.args,
            stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.time() + timeout
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None:
                raise RuntimeError("localhub exited with %d: %s" % (
                    self.proc.returncode, self.server_errors()))
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("localhub did not become ready")
            time.sleep(0.02)
        with open(self.ready) as f:
            info = json.load(f)
        self.url, self.cdn, self.admin_url = info["hub"], info["cdn"], info["admin"]
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.stderr.close()

    def server_errors(self):
        with open(os.path.join(self.workdir, "server.err"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    # --- seeding ---------------------------------------------------------
    def seed(self, *args):
        """Run a localhub seeding command; returns its JSON output."""
        cmd = [PYTHON, LOCALHUB, args[0], "--data", self.data] + list(args[1:])
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE).stdout
        return json.loads(out) if out.strip() else None

    # --- requests --------------------------------------------------------
    def request(self, method, path, token=None, headers=None, body=None,
                timeout=30):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        url = path if path.startswith("http") else self.url + path
        return http_request(url, method, h, body, timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def admin(self, method, path, body=None):
        r = http_request(self.admin_url + path, method, {}, body)
        if r.status != 200:
            raise RuntimeError("admin %s %s: %r" % (method, path, r))
        return r.json()

    def mark(self):
        return self.admin("GET", "/log?since=999999999")["last"]

    def log_since(self, seq):
        return self.admin("GET", "/log?since=%d" % seq)["entries"]

    def leaks(self):
        return self.admin("GET", "/auth-leaks")


class Git:
    """Runs git with an isolated HOME and no prompts."""

    def __init__(self, home):
        self.home = home
        os.makedirs(home, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_LFS_SKIP_SMUDGE": "1",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        }

    def run(self, *args, cwd=None, check=True, env=None, input=None,
            timeout=GIT_TIMEOUT):
        e = dict(self.env)
        e.update(env or {})
        p = subprocess.run(["git"] + list(args), cwd=cwd, env=e, input=input,
                           stdin=None if input is not None else
                           subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("git %s failed (%d):\n%s" % (
                " ".join(args), p.returncode,
                p.stderr.decode("utf-8", "replace")))
        return p

    def out(self, *args, **kw):
        return self.run(*args, **kw).stdout



BUILD_DIR = os.environ.get("HUBFS_BUILD_DIR", os.path.join(ROOT, "build"))
HUBFS = os.path.join(BUILD_DIR, "hubfs")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "WARNING: ThreadSanitizer")


class Mount:
    """A hubfs mount run in the foreground by the test, so the test owns
    its pid; unmounted and waited for at teardown, even on failure."""

    def __init__(self, workdir, source, endpoint, opts=(), token=None,
                 cache_dir=None, env=None):
        self.workdir = workdir
        self.mnt = os.path.join(workdir, "mnt")
        self.cache_dir = cache_dir or os.path.join(workdir, "cache")
        self.errfile = os.path.join(workdir, "hubfs.err")
        os.makedirs(self.mnt, exist_ok=True)
        self.source = source
        self.endpoint = endpoint
        self.opts = ["cache_dir=" + self.cache_dir] + list(opts)
        self.token = token
        self.extra_env = env or {}
        self.proc = None
        self.returncode = None

    def env(self):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("HF_")}
        e["HOME"] = self.workdir        # no token file of the machine's
        e["HF_ENDPOINT"] = self.endpoint
        if self.token:
            e["HF_TOKEN"] = self.token
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.update(self.extra_env)
        return e

    def argv(self, foreground=True):
        return ([HUBFS] + (["-f"] if foreground else []) +
                [self.source, self.mnt, "-o", ",".join(self.opts)])

    def start(self, timeout=30):
        if not os.path.exists(HUBFS):
            pytest.skip("hubfs is not built (%s)" % HUBFS)
        self.err = open(self.errfile, "ab")
        self.proc = subprocess.Popen(self.argv(), env=self.env(),
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err)
        deadline = time.time() + timeout
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                self.proc = None
                raise RuntimeError("hubfs exited with %d: %s" % (
                    self.returncode, self.errors()))
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("hubfs did not mount in %ds: %s" % (
                    timeout, self.errors()))
            time.sleep(0.02)
        self.minor = os.minor(os.stat(self.mnt).st_dev)
        return self

    def stop(self, timeout=30):
        if self.proc is None:
            return self.returncode
        # Also when the daemon died: its dead mount (ENOTCONN) is not
        # ismount(), but is still there.
        subprocess.run(["fusermount3", "-u", "-z", self.mnt],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # A daemon that cannot exit (say, it crashed while the kernel
            # waits for one of its replies) is freed by aborting its
            # FUSE connection, whose number is the mount's device minor.
            self.abort_connection()
            self.proc.kill()
            self.returncode = self.proc.wait(30)
        self.proc = None
        self.err.close()
        return self.returncode

    def kill(self):
        """kill -9 the daemon and clear its dead mount."""
        self.proc.kill()
        self.returncode = self.proc.wait(30)
        self.abort_connection()
        subprocess.run(["fusermount3", "-u", "-z", self.mnt],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc = None
        self.err.close()

    def abort_connection(self):
        ctl = "/sys/fs/fuse/connections"
        if not os.path.isdir(os.path.join(ctl, ".")) or not os.listdir(ctl):
            subprocess.run(["mount", "-t", "fusectl", "none", ctl],
                           stderr=subprocess.DEVNULL)
        try:
            with open(os.path.join(ctl, str(self.minor), "abort"), "w") as f:
                f.write("1")
        except OSError:
            pass

    def errors(self):
        try:
            with open(self.errfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)


@pytest.fixture
def mount_factory(tmp_path):
    """Mount hubfs; every mount is unmounted at the end, and the daemon's
    output must hold no sanitizer report and no token."""
    mounts = []

    def make(hub, source, *opts, token=None, cache_dir=None, env=None,
             start=True):
        d = tmp_path / ("mount%d" % len(mounts))
        d.mkdir()
        m = Mount(str(d), source, hub.url, opts, token, cache_dir, env)
        mounts.append(m)
        return m.start() if start else m
    yield make
    for m in mounts:
        m.stop()
    for m in mounts:
        out = m.errors()
        for mark in SANITIZER_MARKS:
            assert mark not in out, out
        for tok in (WRITE, READ, BOB, CAROL):
            assert tok not in out


@pytest.fixture
def localhub_factory(tmp_path):
    """Start extra servers with custom flags; all are stopped at the end."""
    hubs = []

    def make(*args, config=None, name=None):
        d = tmp_path / (name or "hub%d" % len(hubs))
        d.mkdir()
        h = LocalHub(str(d), args, config)
        hubs.append(h)
        return h
    yield make
    for h in hubs:
        h.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A server with a seeded model (with history), dataset and space.
    Its tree pages hold 100 entries, so listings span many pages."""
    d = tmp_path_factory.mktemp("localhub")
    h = LocalHub(str(d), ["--page-size", "100"])
    h.seeded = {
        "model": h.seed("seed-model", "tester/model1", "--shards", "2",
                        "--shard-size", "3MiB"),
        "dataset": h.seed("seed-dataset", "datasets/tester/ds1", "--files",
                          "1200", "--lfs-every", "300"),
        "space": h.seed("seed-space", "spaces/tester/sp1"),
    }
    h.start()
    yield h
    h.stop()
    shutil.rmtree(str(d), ignore_errors=True)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """`cmake --install` of the build into a staging prefix."""
    prefix = str(tmp_path_factory.mktemp("stage"))
    r = subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    return prefix


@pytest.fixture(scope="session")
def js_client_dir():
    """The official JavaScript client, installed from the committed
    package-lock.json (npm ci) if it is not there yet."""
    d = os.path.join(ROOT, "tests", "js")
    if not os.path.isdir(os.path.join(d, "node_modules", "@huggingface",
                                      "hub")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=d,
                       check=True)
    return d


def pytest_configure(config):
    sys.path.insert(0, os.path.join(ROOT, "tests", "localhub"))


# Not test directories: the server's own code, the JS client's
# node_modules.  tests/bench holds one test, its smoke run.
collect_ignore_glob = ["js/*", "localhub/*"]
