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


# Not test directories: the server's own code, the JS client's node_modules,
# benchmark scripts.
collect_ignore_glob = ["js/*", "localhub/*", "bench/*"]
