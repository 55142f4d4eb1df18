"""The Hub client (src/hub/) against the local Hub, through hub_probe.

hub_probe (tests/tools/hub_probe.c) drives include/hubfs/hub.h from the
command line; these tests compare what it prints with what the server
holds, inject faults through the server's admin port and read the
server's request log to check what was sent (the token, ranges, how many
/resolve/ hits).  The binary is $HUBFS_BUILD_DIR/tests/tools/hub_probe
(default build/).
"""

import calendar
import http.server
import json
import os
import random
import threading
import time
import urllib.parse

import pytest

from probeutil import needs_probe, run_probe
from conftest import CAROL, READ, WRITE, http_request

pytestmark = needs_probe

MODEL = "tester/model1"
SHARD1 = "model-00001-of-00002.safetensors"
SPACES = "notes/changes with spaces #1.md"


def probe(endpoint, *args, token=None, rtype="model", repo=MODEL,
          opts=("--retries", "3", "--backoff-ms", "10"), timeout=60):
    """Run hub_probe on one repository."""
    return run_probe([endpoint, rtype, repo] + list(args), token=token,
                     opts=opts, timeout=timeout)


# --- server-side views -------------------------------------------------------

def api_base(rtype, repo):
    return "/api/%ss/%s" % (rtype, repo)


def file_base(rtype, repo):
    return ("" if rtype == "model" else rtype + "s/") + repo


def server_pages(h, commit, rtype="model", repo=MODEL, token=WRITE):
    """The recursive listing as the server pages it for the query the
    client sends, in its order, in hub_probe's line format: a list of
    pages, each a list of lines."""
    url = h.url + "%s/tree/%s?recursive=true&expand=false&limit=1000" % (
        api_base(rtype, repo), commit)
    pages = []
    while url:
        lines = []
        pages.append(lines)
        r = h.get(url, token=token)
        assert r.status == 200, r
        for e in r.json():
            lfs = e.get("lfs")
            lines.append("%s %s %d %s %s %s" % (
                "dir" if e["type"] == "directory" else "file", e["oid"],
                0 if e["type"] == "directory" else
                (lfs["size"] if lfs else e["size"]),
                "lfs" if lfs else "-", lfs["oid"] if lfs else "-",
                e["path"]))
        link = r.header("link")
        url = link.split(">")[0].lstrip("<") if link else None
    return pages


def server_tree(h, commit, rtype="model", repo=MODEL, token=WRITE):
    return [line for page in server_pages(h, commit, rtype, repo, token)
            for line in page]


def entries(h, commit, rtype="model", repo=MODEL):
    """path -> (key, lfs, size) of the files at commit."""
    out = {}
    for line in server_tree(h, commit, rtype, repo):
        kind, oid, size, lfs, sha, path = line.split(" ", 5)
        if kind == "file":
            out[path] = (sha if lfs == "lfs" else oid, lfs == "lfs",
                         int(size))
    return out


def real_bytes(h, commit, path, rtype="model", repo=MODEL):
    r = h.get("/%s/resolve/%s/%s" % (file_base(rtype, repo), commit,
                                      urllib.parse.quote(path)),
              token=WRITE)
    if r.status == 307:		# relative, to /api/resolve-cache/
        r = h.get(r.header("location"), token=WRITE)
    if r.status == 302:		# absolute, to the CDN: no token
        r = http_request(r.header("location"))
    assert r.status == 200, r
    return r.body


def read_args(h, commit, path, ranges, rtype="model", repo=MODEL):
    key, lfs, size = entries(h, commit, rtype, repo)[path]
    args = ["read", commit, path, key, "lfs" if lfs else "regular", size]
    for off, n in ranges:
        args += [off, n]
    return args


def expected(data, ranges):
    return b"".join(data[o:o + n] for o, n in ranges)


def random_ranges(size, n, seed):
    rng = random.Random(seed)
    out = [(0, 1), (size - 1, 1), (0, size)]
    for _ in range(n):
        off = rng.randrange(size)
        out.append((off, rng.randint(1, size - off)))
    return out


def log_of(h, seq, origin=None, route=None):
    return [e for e in h.log_since(seq)
            if (origin is None or e["origin"] == origin)
            and (route is None or e["route"] == route)]


# --- fixtures ----------------------------------------------------------------

@pytest.fixture(scope="module")
def main(hub):
    return hub.seeded["model"]["main"]


@pytest.fixture(scope="module")
def extra(hub):
    """Repos added to the module's server: private, gated, a large
    dataset whose listing spans several pages."""
    return {
        "priv": hub.seed("seed-model", "tester/priv", "--private",
                         "--no-history", "--shards", "1", "--shard-size",
                         "64KiB")["main"],
        "gated": hub.seed("seed-model", "tester/gated", "--gated", "auto",
                          "--no-history", "--shards", "1", "--shard-size",
                          "64KiB")["main"],
        "big": hub.seed("seed-dataset", "datasets/tester/big", "--files",
                        "3500", "--lfs-every", "700")["main"],
    }


@pytest.fixture(autouse=True)
def clean_server(hub):
    hub.admin("DELETE", "/faults")
    yield
    hub.admin("DELETE", "/faults")
    hub.admin("POST", "/ratelimit", {"limit": None})
    hub.admin("POST", "/config", {"resolve_cache_redirect": False})


# --- revisions and refs ------------------------------------------------------

def test_revision_resolution(hub, main):
    seeded = hub.seeded["model"]
    cases = [(None, main), ("main", main), ("v1.0", seeded["v1.0"]),
             ("v2.0", main), ("dev", seeded["dev"]),
             ("feature/x", seeded["feature/x"]),
             ("refs/pr/1", seeded["refs/pr/1"]),
             (seeded["first"], seeded["first"])]
    for rev, commit in cases:
        seq = hub.mark()
        r = probe(hub.url, "revision", *([rev] if rev else []))
        assert r.rc == 0, r
        got_commit, got_time = r.out.decode().split()
        assert got_commit == commit
        reqs = log_of(hub, seq, route="repo-info")
        assert len(reqs) == 1
        if rev:
            # One segment: refs/pr/1 is sent as refs%2Fpr%2F1.
            enc = urllib.parse.quote(rev, safe="")
            assert reqs[0]["path"].endswith("/revision/" + enc)
        info = hub.get("%s/revision/%s" % (api_base("model", MODEL),
                                           commit)).json()
        t = time.strptime(info["lastModified"][:19], "%Y-%m-%dT%H:%M:%S")
        assert int(got_time) == calendar.timegm(t)


def test_refs(hub):
    srv = hub.get(api_base("model", MODEL) + "/refs?include_prs=1").json()
    want = set()
    for kind, key in (("branch", "branches"), ("tag", "tags"),
                      ("convert", "converts"), ("pr", "pullRequests")):
        for ref in srv[key]:
            name = ref["ref"] if kind in ("convert", "pr") else ref["name"]
            want.add("%s %s %s" % (kind, name, ref["targetCommit"]))
    r = probe(hub.url, "refs", "prs")
    assert r.rc == 0, r
    assert set(r.lines) == want and len(r.lines) == len(want)
    r = probe(hub.url, "refs")
    assert set(r.lines) == {x for x in want if not x.startswith("pr ")}


# --- errors ------------------------------------------------------------------

def test_missing_repo_and_revision(hub):
    r = probe(hub.url, "revision", repo="tester/nope")
    assert r.rc == 1 and r.out == b""
    assert "repository models/tester/nope not found (or it is private " \
           "and no valid token was given)" in r.err
    r = probe(hub.url, "revision", "nope")
    assert r.rc == 1
    assert "revision nope not found in models/tester/model1" in r.err
    r = probe(hub.url, "tree", "0" * 40, token=READ)
    assert r.rc == 1 and "revision 0000" in r.err


def test_private_repo_needs_a_token(hub, extra):
    r = probe(hub.url, "revision", repo="tester/priv")
    assert r.rc == 1
    assert "models/tester/priv not found (or it is private" in r.err
    r = probe(hub.url, "revision", repo="tester/priv", token=CAROL)
    assert r.rc == 1 and "not found" in r.err
    r = probe(hub.url, "revision", repo="tester/priv", token=READ)
    assert r.rc == 0, r
    assert r.out.decode().split()[0] == extra["priv"]


def test_bad_token_is_refused_and_never_shown(hub):
    bad = "hf_wrong_token_0123456789"
    for args in (("revision",), ("refs",), ("tree", "main")):
        r = probe(hub.url, *args, token=bad, opts=("--trace",))
        assert r.rc == 1
        assert "the token was refused" in r.err
        assert "Permission denied" in r.err
        assert bad not in r.err and "wrong_token" not in r.err


def test_gated_repo_and_missing_file(hub, extra):
    gated = extra["gated"]
    files = entries(hub, gated, repo="tester/gated")
    path = [p for p, (k, lfs, s) in files.items() if lfs][0]
    args = read_args(hub, gated, path, [(0, 10)], repo="tester/gated")
    r = probe(hub.url, *args, token=CAROL, repo="tester/gated")
    assert r.rc == 1 and r.out == b""
    assert "models/tester/gated is gated" in r.err
    r = probe(hub.url, *args, token=READ, repo="tester/gated")
    assert r.rc == 0, r
    assert r.out == real_bytes(hub, gated, path, repo="tester/gated")[:10]
    r = probe(hub.url, "read", gated, "no/such.txt", "0" * 40, "regular",
              10, 0, 5, repo="tester/gated", token=READ)
    assert r.rc == 1 and "no/such.txt not found" in r.err


def test_unreachable_hub_fails_quickly():
    r = probe("http://127.0.0.1:1", "revision",
              opts=("--retries", "2", "--backoff-ms", "10"))
    assert r.rc == 1 and "cannot reach http://127.0.0.1:1" in r.err
    assert r.stats()["requests"] == 3 and r.elapsed < 10


# --- trees -------------------------------------------------------------------

@pytest.mark.parametrize("rtype,repo,which", [
    ("model", MODEL, "model"),
    ("dataset", "tester/ds1", "dataset"),
    ("space", "tester/sp1", "space"),
    ("dataset", "tester/big", "big"),
])
def test_tree_listing_equals_server(hub, extra, rtype, repo, which):
    commit = extra["big"] if which == "big" else hub.seeded[which]["main"]
    want = server_pages(hub, commit, rtype, repo)
    seq = hub.mark()
    r = probe(hub.url, "tree", commit, rtype=rtype, repo=repo, token=READ)
    assert r.rc == 0, r
    assert r.lines == [line for page in want for line in page]
    pages = log_of(hub, seq, route="tree")
    assert len(pages) == len(want)
    assert all(p["auth"] for p in pages)
    assert all("cursor=" in p["query"] for p in pages[1:])
    if which in ("big", "dataset"):
        assert len(pages) >= 2


# --- reads -------------------------------------------------------------------

def test_reads_at_random_ranges_equal_the_real_bytes(hub, main):
    files = entries(hub, main)
    chosen = [SHARD1, "model-00002-of-00002.safetensors", "config.json",
              "tokenizer.json", SPACES]
    assert files[SHARD1][1] and not files["config.json"][1]
    seq = hub.mark()
    for i, path in enumerate(chosen):
        data = real_bytes(hub, main, path)
        ranges = random_ranges(len(data), 6, seed=i)
        r = probe(hub.url, *read_args(hub, main, path, ranges),
                  token=WRITE)
        assert r.rc == 0, r
        assert r.out == expected(data, ranges)
    log = hub.log_since(seq)
    assert not [e for e in log if e["origin"] == "cdn" and e["auth"]]
    assert all(e["auth"] for e in log if e["route"] == "resolve")
    assert hub.leaks() == []


def test_dataset_files(hub):
    commit = hub.seeded["dataset"]["main"]
    files = entries(hub, commit, "dataset", "tester/ds1")
    lfs = sorted(p for p, v in files.items() if v[1])
    plain = sorted(p for p, v in files.items() if not v[1])
    for path in (lfs[0], lfs[-1], plain[0], plain[-1]):
        data = real_bytes(hub, commit, path, "dataset", "tester/ds1")
        ranges = random_ranges(len(data), 3, seed=len(path))
        r = probe(hub.url, *read_args(hub, commit, path, ranges, "dataset",
                                      "tester/ds1"),
                  rtype="dataset", repo="tester/ds1")
        assert r.rc == 0, r
        assert r.out == expected(data, ranges)


def test_signed_url_is_reused(hub, main):
    data = real_bytes(hub, main, SHARD1)
    ranges = [(i * 300000, 4096) for i in range(8)]
    seq = hub.mark()
    r = probe(hub.url, *read_args(hub, main, SHARD1, ranges), token=READ,
              opts=("--trace",))
    assert r.rc == 0, r
    assert r.out == expected(data, ranges)
    # The trace shows each request, never the signature or the token.
    assert r.err.count("hub: GET ") == 8 and "?[redacted]" in r.err
    assert "X-Signature" not in r.err and "with token" in r.err
    assert len(log_of(hub, seq, route="resolve")) == 1
    cdn = log_of(hub, seq, origin="cdn")
    assert len(cdn) == 8 and not any(e["auth"] for e in cdn)
    assert [e["range"] for e in cdn] == [
        "bytes=%d-%d" % (o, o + n - 1) for o, n in ranges]
    st = r.stats()
    assert st["locates"] == 1 and st["requests"] == 9


def test_threads_share_the_client(hub, main):
    data = real_bytes(hub, main, SHARD1)
    ranges = random_ranges(len(data), 20, seed=99)
    seq = hub.mark()
    r = probe(hub.url, *read_args(hub, main, SHARD1, ranges), token=READ,
              opts=("--threads", "4"))
    assert r.rc == 0, r
    assert r.out == expected(data, ranges)
    assert 1 <= len(log_of(hub, seq, route="resolve")) <= 4


def test_regular_file_through_resolve_cache_redirect(hub, main):
    hub.admin("POST", "/config", {"resolve_cache_redirect": True})
    data = real_bytes(hub, main, "tokenizer.json")
    ranges = [(100, 5000), (0, len(data))]
    seq = hub.mark()
    r = probe(hub.url, *read_args(hub, main, "tokenizer.json", ranges),
              token=READ)
    assert r.rc == 0, r
    assert r.out == expected(data, ranges)
    hops = log_of(hub, seq, route="resolve-cache")
    assert len(hops) == 2 and all(e["auth"] and e["status"] == 206
                                  for e in hops)
    assert all(e["status"] == 307 for e in log_of(hub, seq, route="resolve"))


# --- faults ------------------------------------------------------------------

FAST = ("--retries", "8", "--backoff-ms", "5")


def test_503_on_a_fraction_of_requests(hub, main):
    hub.admin("POST", "/faults", {"fraction": 0.35, "seed": 11,
                                  "status": 503, "name": "flaky"})
    data = real_bytes(hub, main, SHARD1)
    ranges = random_ranges(len(data), 10, seed=5)
    r = probe(hub.url, *read_args(hub, main, SHARD1, ranges), token=READ,
              opts=FAST)
    assert r.rc == 0, r
    assert r.out == expected(data, ranges)
    assert r.stats()["retries"] > 0
    t = probe(hub.url, "tree", main, token=READ, opts=FAST)
    assert t.rc == 0 and t.lines == server_tree(hub, main)
    v = probe(hub.url, "revision", "refs/pr/1", opts=FAST)
    assert v.rc == 0
    assert v.out.split()[0].decode() == hub.seeded["model"]["refs/pr/1"]
    fired = [f for f in hub.admin("GET", "/faults") if f["name"] == "flaky"]
    assert fired[0]["fired"] > 0


@pytest.mark.parametrize("action", ["reset", "truncate"])
def test_broken_transfer_resumes_with_the_rest(hub, main, action):
    data = real_bytes(hub, main, SHARD1)
    off, n = 1000, 2 << 20
    hub.admin("POST", "/faults", {"route": "cdn-get", "action": action,
                                  "after_bytes": 300000, "times": 2})
    seq = hub.mark()
    r = probe(hub.url, *read_args(hub, main, SHARD1, [(off, n)]),
              token=READ, opts=FAST)
    assert r.rc == 0, r
    assert r.out == data[off:off + n]
    cdn = log_of(hub, seq, origin="cdn")
    assert len(cdn) == 3
    starts = [int(e["range"].split("=")[1].split("-")[0]) for e in cdn]
    ends = {e["range"].split("-")[1] for e in cdn}
    assert ends == {str(off + n - 1)}
    assert starts[0] == off and starts[0] <= starts[1] <= starts[2]
    if action == "truncate":	# a clean close delivers every byte sent
        assert starts == [off, off + 300000, off + 600000]


def test_truncated_regular_file_resumes(hub, main):
    data = real_bytes(hub, main, "tokenizer.json")
    hub.admin("POST", "/faults", {"route": "resolve", "action": "truncate",
                                  "after_bytes": 10000, "times": 1})
    seq = hub.mark()
    r = probe(hub.url, *read_args(hub, main, "tokenizer.json",
                                  [(0, len(data))]), opts=FAST)
    assert r.rc == 0, r
    assert r.out == data
    reqs = log_of(hub, seq, route="resolve")
    assert [e["range"] for e in reqs] == [
        "bytes=0-%d" % (len(data) - 1), "bytes=10000-%d" % (len(data) - 1)]


@pytest.mark.parametrize("action,message", [
    ("ignore_range", "ignored the Range header"),
    ("wrong_range", "Content-Range"),
])
@pytest.mark.parametrize("path,route", [
    (SHARD1, "cdn-get"), ("tokenizer.json", "resolve")])
def test_bad_range_answers_fail_without_data(hub, main, action, message,
                                             path, route):
    hub.admin("POST", "/faults", {"route": route, "action": action})
    seq = hub.mark()
    r = probe(hub.url, *read_args(hub, main, path, [(10, 4000)]),
              opts=("--retries", "2", "--backoff-ms", "5"))
    assert r.rc == 1 and r.out == b""
    assert message in r.err and "Input/output error" in r.err
    assert len(log_of(hub, seq, route=route)) == 3
    assert r.stats()["retries"] == 2


def test_429_retry_after_is_honoured(hub, main):
    hub.admin("POST", "/faults", {"route": "repo-info", "status": 429,
                                  "retry_after": 2, "times": 1})
    r = probe(hub.url, "revision", opts=("--retries", "3",
                                         "--backoff-ms", "1"))
    assert r.rc == 0, r
    assert r.out.split()[0].decode() == main
    assert r.elapsed >= 1.9
    st = r.stats()
    assert st["throttled"] == 1 and st["retries"] == 1


def test_429_wait_is_capped_then_eagain(hub):
    hub.admin("POST", "/faults", {"route": "repo-info", "status": 429,
                                  "retry_after": 30})
    r = probe(hub.url, "revision", opts=("--retries", "2", "--max-wait-s",
                                         "1", "--backoff-ms", "1"))
    assert r.rc == 1
    assert "rate limited" in r.err
    assert "Resource temporarily unavailable" in r.err
    assert 1.9 <= r.elapsed < 10
    assert r.stats()["throttled"] == 3


def test_ratelimit_header_is_honoured(hub, main):
    hub.admin("POST", "/ratelimit", {"limit": 2, "window": 2,
                                     "buckets": ["resolvers"]})
    data = real_bytes(hub, main, "config.json")
    ranges = [(0, 10), (5, 10), (10, 10), (0, len(data))]
    time.sleep(2.1)	# a fresh window for the probe's own requests
    r = probe(hub.url, *read_args(hub, main, "config.json", ranges),
              token=READ, opts=("--retries", "3", "--backoff-ms", "1"))
    assert r.rc == 0, r
    assert r.out == expected(data, ranges)
    st = r.stats()
    assert st["throttled"] >= 1 and st["retries"] == st["throttled"]
    assert r.elapsed >= 1.5	# RateLimit t + 1 seconds, not 1 ms


def test_stall_mid_body_is_cut_and_resumed(hub, main):
    data = real_bytes(hub, main, SHARD1)
    hub.admin("POST", "/faults", {"route": "cdn-get", "action": "stall",
                                  "seconds": 30, "after_bytes": 65536,
                                  "times": 1})
    r = probe(hub.url, *read_args(hub, main, SHARD1, [(0, 1 << 20)]),
              opts=("--low-speed-s", "1", "--retries", "3",
                    "--backoff-ms", "5"), timeout=25)
    assert r.rc == 0, r
    assert r.out == data[:1 << 20]
    assert r.stats()["retries"] >= 1 and r.elapsed < 15


def test_stall_before_the_answer_is_cut(hub, main):
    hub.admin("POST", "/faults", {"route": "tree", "action": "stall",
                                  "seconds": 30, "times": 1})
    r = probe(hub.url, "tree", main, opts=("--low-speed-s", "1",
                                           "--backoff-ms", "5"), timeout=25)
    assert r.rc == 0, r
    assert r.lines == server_tree(hub, main)
    assert r.elapsed < 15


def test_endless_stall_fails_never_hangs(hub, main):
    hub.admin("POST", "/faults", {"route": "cdn-get", "action": "stall",
                                  "seconds": 30, "after_bytes": 1000})
    r = probe(hub.url, *read_args(hub, main, SHARD1, [(0, 100000)]),
              opts=("--low-speed-s", "1", "--retries", "1",
                    "--backoff-ms", "5"), timeout=25)
    assert r.rc == 1 and r.out == b""
    assert "timed out" in r.err
    assert r.elapsed < 15


def test_cdn_refusing_twice_fails_after_one_relocation(hub, main):
    hub.admin("POST", "/faults", {"route": "cdn-get", "status": 403})
    seq = hub.mark()
    r = probe(hub.url, *read_args(hub, main, SHARD1, [(0, 100)]),
              token=READ, opts=FAST)
    assert r.rc == 1 and r.out == b""
    assert "refused the signed URL" in r.err
    assert len(log_of(hub, seq, route="resolve")) == 2
    assert len(log_of(hub, seq, route="cdn-get")) == 2


def test_expired_signed_url_is_relocated(localhub_factory):
    h = localhub_factory("--url-lifetime", "2")
    commit = h.seed("seed-model", "tester/m", "--no-history", "--shards",
                    "1", "--shard-size", "256KiB")["main"]
    h.start()
    path = "model-00001-of-00001.safetensors"
    data = real_bytes(h, commit, path, repo="tester/m")
    ranges = [(0, 1000), (5000, 1000), (100000, 50000)]
    seq = h.mark()
    r = probe(h.url, *read_args(h, commit, path, ranges, repo="tester/m"),
              repo="tester/m", token=READ,
              opts=("--pause-ms", "3100", "--backoff-ms", "5"))
    assert r.rc == 0, r
    assert r.out == expected(data, ranges)
    # Each read after a pause finds its URL expired and re-locates once
    # (X-Expires has 1 s granularity, so a URL may also expire between
    # HEAD and GET: count rather than list).
    statuses = [e["status"] for e in log_of(h, seq, origin="cdn")]
    refused = statuses.count(403)
    assert statuses.count(206) == 3 and refused >= 2
    assert statuses[-1] == 206 and set(statuses) == {206, 403}
    assert len(log_of(h, seq, route="resolve")) == refused + 1
    assert r.stats()["locates"] == refused + 1
    assert h.leaks() == []


# --- a server that misbehaves on purpose -------------------------------------

class FakeServer:
    """A tiny HTTP server answering from a table; records every request."""

    def __init__(self):
        self.routes = {}
        self.seen = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self):
                fake.seen.append((self.command, self.path,
                                  dict(self.headers.items())))
                path = self.path.split("?")[0]
                status, headers, body = fake.routes.get(
                    path, (404, {}, b"{}"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    servers = []

    def make():
        s = FakeServer()
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop()


C = "ab" * 20


def test_tree_link_to_another_origin_is_refused(fake):
    hub, other = fake(), fake()
    page = json.dumps([{"type": "file", "oid": C, "size": 1,
                        "path": "a.txt"}]).encode()
    hub.routes["/api/models/a/b/tree/" + C] = (200, {
        "Link": '<http://localhost:%d/api/models/a/b/tree/%s?cursor=x>; '
                'rel="next"' % (other.port, C)}, page)
    r = probe("http://127.0.0.1:%d" % hub.port, "tree", C, repo="a/b",
              token=WRITE)
    assert r.rc == 1 and "not on the Hub's origin" in r.err
    assert other.seen == []


def test_tree_entries_are_validated(fake):
    hub = fake()
    good = {"type": "file", "oid": C, "size": 5, "path": "ok/a.txt"}
    bad = [dict(good, path="../escape"), dict(good, path="/abs"),
           dict(good, path="a//b"), dict(good, path="nul\u0000x"),
           dict(good, path="x" * 256), dict(good, oid="123"),
           dict(good, size=1 << 51), dict(good, size="5"),
           dict(good, lfs={"oid": "zz", "size": 5})]
    hub.routes["/api/models/a/b/tree/" + C] = (
        200, {}, json.dumps(bad + [good]).encode())
    r = probe("http://127.0.0.1:%d" % hub.port, "tree", C, repo="a/b")
    assert r.rc == 0, r
    assert r.lines == ["file %s 5 - - ok/a.txt" % C]
    assert r.err.count("skipping tree entry") == len(bad)
    hub.routes["/api/models/a/b/tree/" + C] = (200, {}, b"[{\"type\":")
    r = probe("http://127.0.0.1:%d" % hub.port, "tree", C, repo="a/b")
    assert r.rc == 1 and "malformed tree listing" in r.err


def test_redirect_to_another_origin_drops_the_token(fake):
    hub, other = fake(), fake()
    body = bytes(range(256)) * 4
    hub.routes["/a/b/resolve/%s/f.bin" % C] = (
        307, {"Location": "http://localhost:%d/blob/f.bin" % other.port},
        b"")
    other.routes["/blob/f.bin"] = (206, {
        "Content-Range": "bytes 10-109/%d" % len(body)}, body[10:110])
    r = probe("http://127.0.0.1:%d" % hub.port, "read", C, "f.bin", C,
              "regular", len(body), 10, 100, repo="a/b", token=WRITE)
    assert r.rc == 0, r
    assert r.out == body[10:110]
    assert hub.seen[0][2].get("Authorization") == "Bearer " + WRITE
    assert "Authorization" not in other.seen[0][2]
    assert other.seen[0][2].get("Range") == "bytes=10-109"
    assert other.seen[0][2].get("Accept-Encoding") == "identity"


def test_lfs_location_gets_no_token_and_is_checked(fake):
    hub, cdn = fake(), fake()
    sha = "cd" * 32
    body = os.urandom(5000)
    hub.routes["/a/b/resolve/%s/w.bin" % C] = (
        302, {"Location": "http://localhost:%d/lfs/%s?sig=1" % (cdn.port,
                                                               sha)}, b"")
    # Right status, but the total in Content-Range is not the file's size.
    cdn.routes["/lfs/" + sha] = (206, {
        "Content-Range": "bytes 0-99/9999"}, body[:100])
    r = probe("http://127.0.0.1:%d" % hub.port, "read", C, "w.bin", sha,
              "lfs", len(body), 0, 100, repo="a/b", token=WRITE,
              opts=("--retries", "1", "--backoff-ms", "1"))
    assert r.rc == 1 and r.out == b"" and "Content-Range" in r.err
    assert [m for m, _, _ in hub.seen] == ["HEAD"]
    assert len(cdn.seen) == 2
    assert all("Authorization" not in h for _, _, h in cdn.seen)


# --- last: nothing ever carried the token to the CDN -------------------------

def test_no_cdn_request_ever_carried_the_token(hub):
    log = hub.log_since(0)
    cdn = [e for e in log if e["origin"] == "cdn"]
    assert cdn, "the suite made no CDN request"
    assert not [e for e in cdn if e["auth"]]
    assert hub.leaks() == []
