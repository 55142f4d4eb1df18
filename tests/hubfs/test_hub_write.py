"""The Hub client's write path (src/hub/write.c) against the local Hub,
through hub_probe.

hub_probe's `commit` does what a writer does: preupload, the sha256 of
each LFS file, the LFS upload (basic or multipart, parts in parallel), then
the NDJSON commit with parentCommit.  These tests read what was committed
back through the Hub's /resolve/ and through `git clone` + `git lfs pull`,
inject faults through the server's admin port, and read its request log
to check what was sent (and that no token ever reached the CDN).  A small
scripted Hub of our own checks the exact bytes of each request.  The
binary is $HUBFS_BUILD_DIR/tests/tools/hub_probe (default build/).
"""

import base64
import hashlib
import http.server
import itertools
import json
import os
import threading
import time
import urllib.parse
import uuid

import pytest

from probeutil import needs_probe, run_probe
from conftest import BOB, READ, WRITE, Git, LocalHub, http_request

pytestmark = needs_probe

FAST = ("--retries", "4", "--backoff-ms", "10")
MiB = 1 << 20
DEFAULT_MULTIPART = {"multipart_threshold": 64 * MiB,
                     "multipart_chunk": 16 * MiB}
ESTALE = "Stale file handle"
EACCES = "Permission denied"


def probe(endpoint, repo, *args, token=WRITE, opts=FAST, timeout=120):
    """Run hub_probe on a model repo."""
    return run_probe([endpoint, "model", repo] + list(args), token=token,
                     opts=opts, timeout=timeout)


class Writer:
    """Builds `hub_probe commit` command lines from {path: bytes}."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "src"
        self.dir.mkdir(exist_ok=True)
        self.n = itertools.count()

    def local(self, data):
        p = self.dir / ("f%d" % next(self.n))
        p.write_bytes(data)
        return str(p)

    def args(self, parent, adds=(), deletes=(), folders=(), summary=None,
             parallel=None, branch="main"):
        a = ["commit", branch, parent]
        for path, data in adds:
            a += ["--add", "%s=%s" % (path, self.local(data))]
        for path in deletes:
            a += ["--delete", path]
        for path in folders:
            a += ["--delete-folder", path]
        if summary:
            a += ["--summary", summary]
        if parallel:
            a += ["--parallel", parallel]
        return a


# --- server-side views -------------------------------------------------------

def new_repo(h, token=WRITE):
    name = "w-%s" % uuid.uuid4().hex[:10]
    r = h.request("POST", "/api/repos/create", token=token, body={
        "name": name, "organization": "alice", "type": "model"})
    assert r.status == 200, r
    return "alice/" + name


def head(h, repo, rev="main"):
    r = h.get("/api/models/%s/revision/%s" % (
        repo, urllib.parse.quote(rev, safe="")), token=WRITE)
    assert r.status == 200, r
    return r.json()["sha"]


def files_at(h, repo, rev="main"):
    """path -> (lfs, size, key) of the files at rev."""
    r = h.get("/api/models/%s/tree/%s?recursive=true&limit=1000" % (
        repo, urllib.parse.quote(rev, safe="")), token=WRITE)
    assert r.status == 200, r
    assert not r.header("link")
    out = {}
    for e in r.json():
        if e["type"] == "file":
            lfs = e.get("lfs")
            out[e["path"]] = (bool(lfs), e["size"],
                              lfs["oid"] if lfs else e["oid"])
    return out


def resolve(h, repo, rev, path):
    r = h.get("/%s/resolve/%s/%s" % (repo, rev, urllib.parse.quote(path)),
              token=WRITE)
    if r.status == 302:		# an LFS file: the CDN, without the token
        r = http_request(r.header("location"))
    assert r.status == 200, (path, r)
    return r.body


def commits_of(h, repo, rev="main"):
    r = h.get("/api/models/%s/commits/%s?limit=1000" % (repo, rev),
              token=WRITE)
    assert r.status == 200, r
    return r.json()


def log_of(h, seq, route=None, origin=None):
    return [e for e in h.log_since(seq)
            if (route is None or e["route"] == route)
            and (origin is None or e["origin"] == origin)]


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def assert_committed(h, repo, commit, want):
    """The files of commit are exactly want (.gitattributes aside), with
    these bytes, LFS where the Hub decided so."""
    got = files_at(h, repo, commit)
    got.pop(".gitattributes", None)
    assert sorted(got) == sorted(want)
    for path, data in want.items():
        lfs, size, key = got[path]
        assert size == len(data), path
        if lfs:
            assert key == hashlib.sha256(data).hexdigest(), path
        else:
            assert key == git_blob_id(data), path
        assert resolve(h, repo, commit, path) == data, path


def max_overlap(entries, slack=0.0):
    """The most requests of entries in flight at once (from the log's
    start times and durations).  The server logs a request as done only
    after its answer is sent, when the client may have started the next:
    @slack seconds are taken off each end."""
    points = []
    for e in entries:
        points.append((e["ts"], 1))
        points.append((e["ts"] + e["ms"] / 1000.0 - slack, -1))
    best = cur = 0
    for _, d in sorted(points, key=lambda p: (p[0], p[1])):
        cur += d
        best = max(best, cur)
    return best


# --- fixtures ----------------------------------------------------------------

@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("writehub")
    h = LocalHub(str(d))
    h.start()
    yield h
    h.stop()


@pytest.fixture(autouse=True)
def clean_server(hub):
    hub.admin("DELETE", "/faults")
    hub.admin("POST", "/config", DEFAULT_MULTIPART)
    yield
    hub.admin("DELETE", "/faults")
    hub.admin("POST", "/config", DEFAULT_MULTIPART)
    # Whatever a test did, no request to the CDN carried a token.
    assert hub.leaks() == []


@pytest.fixture
def w(tmp_path):
    return Writer(tmp_path)


@pytest.fixture(scope="module")
def git(tmp_path_factory):
    g = Git(str(tmp_path_factory.mktemp("githome")))
    g.run("lfs", "install", "--skip-repo")
    return g


def small_files():
    return {
        "README.md": b"# written by hubfs\n",
        "empty.txt": b"",
        "weights/model.safetensors": os.urandom(300_000),
        "data/nul sample.raw": b"ab\0cd" * 1000,
        "notes/with space #1 %41 +&=?.md": "caf\u00e9\n".encode(),
        "d\u00e9j\u00e0/\u65e5\u672c/\u00f1.txt": b"unicode\n",
        "q\"uote\\back.txt": b"escapes\n",
    }


# --- committing --------------------------------------------------------------

def test_regular_and_lfs_files_round_trip(hub, w, git, tmp_path):
    repo = new_repo(hub)
    parent = head(hub, repo)
    want = small_files()
    seq = hub.mark()
    r = probe(hub.url, repo, *w.args(parent, want.items(),
                                     summary="Add files"),
              opts=FAST + ("--trace",))
    assert r.rc == 0, r
    commit = r.out.decode().strip()
    assert commit == head(hub, repo)
    assert_committed(hub, repo, commit, want)
    lfs = {p for p, v in files_at(hub, repo, commit).items() if v[0]}
    assert lfs == {"weights/model.safetensors", "data/nul sample.raw"}
    c = commits_of(hub, repo)
    assert c[0]["id"] == commit and c[0]["title"] == "Add files"
    assert c[1]["id"] == parent

    log = hub.log_since(seq)
    routes = [e["route"] for e in log]
    assert routes.count("preupload") == 1
    assert routes.count("lfs-batch") == 1
    assert routes.count("cdn-put") == 2 and routes.count("lfs-verify") == 2
    assert routes.count("commit") == 1
    assert all(e["auth"] for e in log if e["origin"] == "hub")
    assert not any(e["auth"] for e in log if e["origin"] == "cdn")
    st = r.stats()
    assert st["commits"] == 1 and st["retries"] == 0
    assert st["bytes_sent"] > sum(len(d) for d in want.values())
    # The trace shows each request, never a signature.
    assert r.err.count("hub: PUT ") == 2 and "?[redacted]" in r.err
    assert "X-Signature" not in r.err

    # git and git-lfs, independent clients, see the same commit.
    wt = str(tmp_path / "wt")
    git.run("clone", "-q", "%s/%s" % (hub.url, repo), wt)
    assert git.out("rev-parse", "HEAD", cwd=wt).decode().strip() == commit
    git.run("lfs", "pull", cwd=wt)
    for path, data in want.items():
        with open(os.path.join(wt, path), "rb") as f:
            assert f.read() == data, path


def test_paths_and_remote_oids_in_preupload(hub, w):
    repo = new_repo(hub)
    want = small_files()
    r = probe(hub.url, repo, *w.args(head(hub, repo), want.items()))
    assert r.rc == 0, r
    # Now the paths exist: preupload names what each holds.
    args = ["preupload", "main"] + ["%s=%s" % (p, w.local(d))
                                    for p, d in want.items()]
    args.append("new/unknown.bin=%s" % w.local(b"\x01\x02"))
    r = probe(hub.url, repo, *args)
    assert r.rc == 0, r
    got = {}
    for line in r.lines:
        mode, ignore, oid, path = line.split(" ", 3)
        assert ignore == "-"
        got[path] = (mode, oid)
    server = files_at(hub, repo)
    for path in want:
        lfs, _, key = server[path]
        assert got[path] == ("lfs" if lfs else "regular", key), path
    # A .bin goes through LFS (the repo's .gitattributes says so).
    assert got["new/unknown.bin"] == ("lfs", "-")


def test_preupload_is_batched(hub, w):
    repo = new_repo(hub)
    args = ["preupload", "main"]
    for i in range(230):
        args.append("many/%03d.%s=%s" % (i, "bin" if i % 2 else "txt",
                                        w.local(b"x%d" % i)))
    args.append("many/empty.bin=%s" % w.local(b""))
    seq = hub.mark()
    r = probe(hub.url, repo, *args)
    assert r.rc == 0, r
    assert len(r.lines) == 231
    modes = {line.split(" ", 3)[3]: line.split()[0] for line in r.lines}
    assert modes["many/001.bin"] == "lfs" and modes["many/000.txt"] == \
        "regular"
    assert modes["many/empty.bin"] == "regular"
    assert len(log_of(hub, seq, route="preupload")) == 3


def test_gitattributes_text_is_sent(hub, w):
    repo = new_repo(hub)
    attrs = w.local(b"*.txt filter=lfs diff=lfs merge=lfs -text\n")
    data = b"now an LFS file\n"
    r = probe(hub.url, repo, *w.args(head(hub, repo),
                                     [("notes.txt", data)]) +
              ["--gitattributes", attrs])
    assert r.rc == 0, r
    assert files_at(hub, repo)["notes.txt"][0]
    assert resolve(hub, repo, "main", "notes.txt") == data


def test_delete_file_and_folder(hub, w):
    repo = new_repo(hub)
    first = {"a/1.txt": b"1", "a/b/2.bin": b"2" * 100, "c.txt": b"c",
             "keep.txt": b"k"}
    r = probe(hub.url, repo, *w.args(head(hub, repo), first.items()))
    assert r.rc == 0, r
    r = probe(hub.url, repo, *w.args(r.out.decode().strip(),
                                     deletes=["c.txt"], folders=["a"],
                                     summary="Remove"))
    assert r.rc == 0, r
    assert_committed(hub, repo, r.out.decode().strip(),
                     {"keep.txt": b"k"})
    before = head(hub, repo)
    r = probe(hub.url, repo, *w.args(before, deletes=["nope.txt"]))
    assert r.rc == 1 and "No such file or directory" in r.err
    r = probe(hub.url, repo, *w.args(before, folders=["nope"]))
    assert r.rc == 1 and "No such file or directory" in r.err
    assert head(hub, repo) == before


def test_object_already_stored_is_not_sent_again(hub, w):
    repo = new_repo(hub)
    data = os.urandom(200_000)
    r = probe(hub.url, repo, *w.args(head(hub, repo), [("a.bin", data)]))
    assert r.rc == 0, r
    seq = hub.mark()
    r = probe(hub.url, repo, *w.args(r.out.decode().strip(),
                                     [("copy/b.bin", data)]))
    assert r.rc == 0, r
    assert [e["route"] for e in hub.log_since(seq)] == [
        "preupload", "lfs-batch", "commit"]
    assert r.stats()["bytes_sent"] < 10_000
    assert_committed(hub, repo, r.out.decode().strip(),
                     {"a.bin": data, "copy/b.bin": data})


def test_multipart_parts_go_in_parallel(hub, w):
    hub.admin("POST", "/config", {"multipart_threshold": MiB,
                                  "multipart_chunk": 256 * 1024})
    # Each part takes a while on the server, so parts in flight overlap
    # measurably.
    hub.admin("POST", "/faults", {"route": "cdn-part", "action": "stall",
                                  "seconds": 0.4, "name": "slow"})
    repo = new_repo(hub)
    data = os.urandom(10 * 256 * 1024 - 1000)	# 10 parts, the last short
    seq = hub.mark()
    r = probe(hub.url, repo, *w.args(head(hub, repo), [("big.bin", data)],
                                     parallel=4))
    assert r.rc == 0, r
    assert_committed(hub, repo, r.out.decode().strip(), {"big.bin": data})
    oid = hashlib.sha256(data).hexdigest()
    log = hub.log_since(seq)
    parts = [e for e in log if e["route"] == "cdn-part"]
    assert sorted(e["path"] for e in parts) == sorted(
        "/upload/%s/part/%d" % (oid, i) for i in range(1, 11))
    assert all(e["status"] == 200 and not e["auth"] for e in parts)
    assert 3 <= max_overlap(parts, slack=0.05) <= 4
    assert r.elapsed < 10 * 0.4
    done = [e["route"] for e in log if e["route"] in (
        "lfs-complete", "lfs-verify", "commit")]
    assert done == ["lfs-complete", "lfs-verify", "commit"]
    complete = [e for e in log if e["route"] == "lfs-complete"][0]
    assert complete["status"] == 200 and not complete["auth"]
    assert complete["ts"] >= max(e["ts"] + e["ms"] / 1000 for e in parts) \
        - 0.01
    assert not [e for e in log if e["route"] == "cdn-put"]


def test_a_completion_does_not_hold_up_the_next_object(hub, w):
    """The thread that sends an object's last part completes it, while the
    others send the next object's parts; each object is still completed
    after all of its own parts, and no more than `parallel` requests are
    ever in flight."""
    hub.admin("POST", "/config", {"multipart_threshold": MiB,
                                  "multipart_chunk": 256 * 1024})
    hub.admin("POST", "/faults", {"route": "lfs-complete", "action": "stall",
                                  "seconds": 0.8, "name": "slow-complete"})
    # Parts that take a while too, so that requests in flight at once are
    # told apart from the log's timing.
    hub.admin("POST", "/faults", {"route": "cdn-part", "action": "stall",
                                  "seconds": 0.2, "name": "slow-part"})
    repo = new_repo(hub)
    files = {"a.bin": os.urandom(8 * 256 * 1024),
             "b.bin": os.urandom(8 * 256 * 1024 + 7),
             "c.bin": os.urandom(6 * 256 * 1024 - 3)}
    seq = hub.mark()
    r = probe(hub.url, repo, *w.args(head(hub, repo), sorted(files.items()),
                                     parallel=4))
    assert r.rc == 0, r
    assert_committed(hub, repo, r.out.decode().strip(), files)
    log = hub.log_since(seq)
    puts = [e for e in log if e["route"] == "cdn-part"]
    completes = [e for e in log if e["route"] == "lfs-complete"]
    assert len(completes) == 3 and len(puts) == 8 + 9 + 6

    def end(e):
        return e["ts"] + e["ms"] / 1000.0

    overlapped = 0
    for c in completes:
        oid = c["path"].rsplit("/", 1)[1]
        own = [e for e in puts if "/%s/" % oid in e["path"]]
        assert own and c["ts"] >= max(end(e) for e in own) - 0.01
        # Parts of another object went up while this one was completed.
        overlapped += any(e["ts"] < end(c) and end(e) > c["ts"]
                          for e in puts if e not in own)
    assert overlapped >= 1
    busy = [e for e in log if e["route"] in ("cdn-part", "lfs-complete",
                                              "lfs-verify")]
    assert max_overlap(busy, slack=0.05) <= 4


def test_multipart_memory_does_not_grow_with_the_object(hub, w):
    hub.admin("POST", "/config", {"multipart_threshold": 8 * MiB,
                                  "multipart_chunk": 32 * MiB})
    repo = new_repo(hub)
    base = probe(hub.url, repo, "check-write", "main")
    assert base.rc == 0, base
    data = os.urandom(96 * MiB)
    r = probe(hub.url, repo, *w.args(head(hub, repo), [("huge.bin", data)],
                                     parallel=3), timeout=300)
    assert r.rc == 0, r
    assert r.stats()["bytes_sent"] >= len(data)
    # Three 32 MiB parts in flight at once: holding them would cost 96 MiB.
    grown = r.stats()["maxrss_kb"] - base.stats()["maxrss_kb"]
    assert grown < 32 * 1024, grown
    assert resolve(hub, repo, "main", "huge.bin") == data


def test_commits_listing_follows_pages(hub):
    repo = new_repo(hub)
    for i in range(105):
        hub.admin("POST", "/push", {"repo": "models/" + repo,
                                    "files": {"n.txt": "%d" % i},
                                    "message": "push %d" % i})
    server = commits_of(hub, repo)
    assert len(server) == 106
    seq = hub.mark()
    r = probe(hub.url, repo, "commits", "main", 1000, token=READ)
    assert r.rc == 0, r
    assert [line.split(" ", 2)[0] for line in r.lines] == [
        c["id"] for c in server]
    assert r.lines[0].split(" ", 2)[2] == "push 104"
    reqs = log_of(hub, seq, route="commits")
    assert len(reqs) == 2 and "limit=100" in reqs[0]["query"]
    assert "p=1" in reqs[1]["query"]
    # At most MAX, from as few pages as that takes.
    seq = hub.mark()
    r = probe(hub.url, repo, "commits", "main", 7)
    assert [line.split(" ", 2)[0] for line in r.lines] == [
        c["id"] for c in server[:7]]
    reqs = log_of(hub, seq, route="commits")
    assert len(reqs) == 1 and "limit=7" in reqs[0]["query"]
    r = probe(hub.url, repo, "commits", "main", 101)
    assert len(r.lines) == 101
    r = probe(hub.url, repo, "commits", "nope")
    assert r.rc == 1 and "revision nope not found" in r.err


# --- refusals ----------------------------------------------------------------

def test_stale_parent_is_estale_and_changes_nothing(hub, w):
    repo = new_repo(hub)
    parent = head(hub, repo)
    theirs = hub.admin("POST", "/push", {"repo": "models/" + repo,
                                         "files": {"x.txt": "theirs"}})
    r = probe(hub.url, repo, *w.args(parent, [("x.txt", b"mine"),
                                              ("w.bin", b"\0" * 50)],
                                     summary="mine"))
    assert r.rc == 1 and r.out == b"", r
    assert ESTALE in r.err and "moved on" in r.err
    assert head(hub, repo) == theirs["commitOid"]
    assert "mine" not in [c["title"] for c in commits_of(hub, repo)]
    assert r.stats()["commits"] == 0


def test_write_needs_a_token_that_can_write(hub, w):
    repo = new_repo(hub)
    before = head(hub, repo)
    r = probe(hub.url, repo, "check-write", "main")
    assert r.rc == 0 and r.lines == ["ok"], r
    for token, why in ((READ, "read-only"), (BOB, "no access")):
        seq = hub.mark()
        r = probe(hub.url, repo, "check-write", "main", token=token)
        assert r.rc == 1 and EACCES in r.err, r
        assert "the token cannot write to models/%s" % repo in r.err
        assert why in r.err
        r = probe(hub.url, repo, *w.args(before, [("a.bin", b"\0" * 9)]),
                  token=token)
        assert r.rc == 1 and EACCES in r.err, r
        routes = [e["route"] for e in hub.log_since(seq)]
        assert routes == ["preupload", "preupload"]
    seq = hub.mark()
    r = probe(hub.url, repo, "check-write", "main", token=None)
    assert r.rc == 1 and "no token: writing needs a token with write " \
        "access" in r.err and EACCES in r.err
    r = probe(hub.url, repo, *w.args(before, [("a.txt", b"x")]), token=None)
    assert r.rc == 1 and EACCES in r.err
    assert hub.log_since(seq) == [] and r.stats()["requests"] == 0
    r = probe(hub.url, repo, "check-write", "nope")
    assert r.rc == 1 and "revision nope not found" in r.err
    assert head(hub, repo) == before


# --- faults ------------------------------------------------------------------

MULTIPART = {"multipart_threshold": MiB, "multipart_chunk": 512 * 1024}

# (name, fault rule, server config): each fault fires a limited number of
# times and the commit must still come out right.  A stall is cut by the
# low-speed limit; libcurl measures speed over its last five seconds, so
# after a body went out it takes some seconds to see a stalled answer.
TRANSIENT = [
    ("preupload-503", {"route": "preupload", "status": 503, "times": 2},
     None),
    ("preupload-truncated", {"route": "preupload", "action": "truncate",
                             "after_bytes": 10, "times": 1}, None),
    ("batch-503", {"route": "lfs-batch", "status": 503, "times": 2}, None),
    ("batch-429", {"route": "lfs-batch", "status": 429, "retry_after": 1,
                   "times": 1}, None),
    ("batch-reset", {"route": "lfs-batch", "action": "reset",
                     "after_bytes": 20, "times": 1}, None),
    ("put-500", {"route": "cdn-put", "status": 500, "times": 2}, None),
    ("put-stall", {"route": "cdn-put", "action": "stall", "seconds": 20,
                   "times": 1}, None),
    ("verify-502", {"route": "lfs-verify", "status": 502, "times": 1},
     None),
    ("verify-reset", {"route": "lfs-verify", "action": "reset",
                      "after_bytes": 1, "times": 1}, None),
    ("part-503", {"route": "cdn-part", "status": 503, "times": 3},
     MULTIPART),
    ("part-stall", {"route": "cdn-part", "action": "stall", "seconds": 20,
                    "times": 1}, MULTIPART),
    ("complete-503", {"route": "lfs-complete", "status": 503, "times": 1},
     MULTIPART),
    ("complete-reset", {"route": "lfs-complete", "action": "reset",
                        "after_bytes": 5, "times": 1}, MULTIPART),
    ("commit-503", {"route": "commit", "status": 503, "times": 2}, None),
    ("commit-504", {"route": "commit", "status": 504, "times": 1}, None),
]


@pytest.mark.parametrize("name,fault,config", TRANSIENT,
                         ids=[t[0] for t in TRANSIENT])
def test_transient_faults_are_retried(hub, w, name, fault, config):
    if config:
        hub.admin("POST", "/config", config)
    repo = new_repo(hub)
    parent = head(hub, repo)
    want = {"a.txt": b"regular\n", "w.bin": os.urandom(1_200_000)}
    fault = dict(fault, name=name)
    hub.admin("POST", "/faults", fault)
    seq = hub.mark()
    r = probe(hub.url, repo, *w.args(parent, want.items(), parallel=2),
              opts=FAST + ("--low-speed-s", "1"), timeout=60)
    assert r.rc == 0, r
    commit = r.out.decode().strip()
    assert commit == head(hub, repo)
    assert_committed(hub, repo, commit, want)
    fired = [f for f in hub.admin("GET", "/faults") if f["name"] == name]
    assert fired[0]["fired"] == fault["times"]
    assert r.stats()["retries"] >= 1
    assert r.elapsed < 15
    # One commit, on top of the parent.
    assert [c["id"] for c in commits_of(hub, repo)][:2] == [commit, parent]
    assert len(log_of(hub, seq, route="commit")) == \
        1 + (fault["times"] if fault["route"] == "commit" else 0)


PERSISTENT = [
    ("batch", {"route": "lfs-batch", "status": 503}, None,
     "the Hub failed (HTTP 503"),
    ("put", {"route": "cdn-put", "status": 503}, None,
     "uploading LFS object"),
    ("part", {"route": "cdn-part", "status": 500}, MULTIPART,
     "uploading part "),
    ("complete", {"route": "lfs-complete", "status": 502}, MULTIPART,
     "completing the upload of LFS object"),
    ("verify", {"route": "lfs-verify", "status": 503}, None,
     "verifying LFS object"),
    ("commit", {"route": "commit", "status": 503}, None,
     "the Hub failed (HTTP 503"),
]


@pytest.mark.parametrize("name,fault,config,message", PERSISTENT,
                         ids=[t[0] for t in PERSISTENT])
def test_persistent_faults_fail_and_commit_nothing(hub, w, name, fault,
                                                   config, message):
    if config:
        hub.admin("POST", "/config", config)
    repo = new_repo(hub)
    parent = head(hub, repo)
    hub.admin("POST", "/faults", dict(fault, name=name))
    seq = hub.mark()
    data = os.urandom(1_100_000)
    r = probe(hub.url, repo, *w.args(parent, [("w.bin", data)], parallel=3),
              opts=("--retries", "2", "--backoff-ms", "5"))
    assert r.rc == 1 and r.out == b"", r
    assert message in r.err and "Input/output error" in r.err, r
    assert r.stats()["commits"] == 0
    assert head(hub, repo) == parent
    hit = log_of(hub, seq, route=fault["route"])
    assert all(e["status"] == fault["status"] for e in hit)
    if name != "part":
        assert len(hit) == 3	# the first attempt and two retries
    later = {"lfs-batch": ["cdn-put", "cdn-part", "commit"],
             "cdn-put": ["lfs-verify", "commit"],
             "cdn-part": ["lfs-complete", "commit"],
             "lfs-complete": ["lfs-verify", "commit"],
             "lfs-verify": ["commit"], "commit": []}[fault["route"]]
    assert not [e for e in hub.log_since(seq) if e["route"] in later]


@pytest.mark.parametrize("action", ["reset", "truncate"])
def test_commit_that_landed_is_never_made_twice(hub, w, action):
    """The answer to the commit is lost after the Hub made it: the retry
    names a parent that is no longer the head, gets 412, and the caller
    gets ESTALE; it then finds its commit in the listing."""
    repo = new_repo(hub)
    parent = head(hub, repo)
    want = {"landed.txt": b"once\n", "w.bin": os.urandom(5000)}
    hub.admin("POST", "/faults", {"route": "commit", "action": action,
                                  "after_bytes": 5, "times": 1})
    seq = hub.mark()
    r = probe(hub.url, repo, *w.args(parent, want.items(),
                                     summary="exactly once"))
    assert r.rc == 1 and ESTALE in r.err, r
    assert [e["status"] for e in log_of(hub, seq, route="commit")] == [
        200, 412]
    ids = [c["id"] for c in commits_of(hub, repo)]
    assert ids[1] == parent and len(ids) == 2
    assert_committed(hub, repo, ids[0], want)
    r = probe(hub.url, repo, "commits", "main", 5)
    assert r.lines[0].startswith(ids[0] + " ")
    assert r.lines[0].endswith(" exactly once")


def test_commit_stalled_past_the_timeout_lands_once(hub, w):
    """The first attempt is held by the server past the client's timeout
    and processed after the retry: whichever lands first, there is one
    commit, and the other attempt gets 412."""
    repo = new_repo(hub)
    parent = head(hub, repo)
    hub.admin("POST", "/faults", {"route": "commit", "action": "stall",
                                  "seconds": 10, "times": 1})
    seq = hub.mark()
    t0 = time.time()
    r = probe(hub.url, repo, *w.args(parent, [("s.txt", b"stalled\n")],
                                     summary="stalled"),
              opts=FAST + ("--low-speed-s", "1"))
    assert r.elapsed < 9.5, r	# the retry did not wait for the stall
    time.sleep(max(0, t0 + 10.5 - time.time()))	# the held one is done
    statuses = sorted(e["status"] for e in log_of(hub, seq, route="commit"))
    assert statuses == [200, 412], statuses
    ids = [c["id"] for c in commits_of(hub, repo)]
    assert len(ids) == 2 and ids[1] == parent
    if r.rc == 0:
        assert r.out.decode().strip() == ids[0]
    else:
        assert ESTALE in r.err, r
    assert_committed(hub, repo, ids[0], {"s.txt": b"stalled\n"})


def test_expired_upload_url_gets_a_new_batch(hub, w):
    """Signed upload URLs live one second; the first PUT is held for
    longer, so the second object's URL has expired by the time it is
    used: the upload server refuses it, and a new batch call hands out a
    fresh one (for that object only) instead of failing the commit."""
    hub.admin("POST", "/config", {"url_lifetime": 1})
    try:
        repo = new_repo(hub)
        parent = head(hub, repo)
        want = {"a.bin": os.urandom(200_000), "b.bin": os.urandom(200_000)}
        hub.admin("POST", "/faults", {"route": "cdn-put", "action": "stall",
                                      "seconds": 2.5, "times": 1})
        seq = hub.mark()
        r = probe(hub.url, repo, *w.args(parent, want.items()))
        assert r.rc == 0, r
        assert_committed(hub, repo, r.out.decode().strip(), want)
        batches = log_of(hub, seq, route="lfs-batch")
        assert len(batches) == 2
        assert sorted(e["status"] for e in log_of(hub, seq,
                                                   route="cdn-put")) \
            == [200, 200, 403]
    finally:
        hub.admin("POST", "/config", {"url_lifetime": 3600})


# --- the exact requests, against a scripted Hub ------------------------------

class ScriptedHub:
    """A tiny HTTP server for the write routes: answers from self.routes
    (path -> (status, headers, body) or a function of the request), and
    records every request with its headers and body."""

    def __init__(self):
        self.routes = {}
        self.seen = []
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path = self.path.split("?")[0]
                req = {"method": self.command, "path": path,
                       "query": self.path.partition("?")[2],
                       "headers": dict(self.headers.items()), "body": body}
                me.seen.append(req)
                route = me.routes.get(path, (404, {}, b"{}"))
                if callable(route):
                    route = route(req)
                status, headers, out = route
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def requests(self, path):
        return [r for r in self.seen if r["path"] == path]


@pytest.fixture
def scripted():
    servers = []

    def make():
        s = ScriptedHub()
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop()


P = "0123456789abcdef0123456789abcdef01234567"
NEW = "89abcdef0123456789abcdef0123456789abcdef"
API = "/api/models/a/b"


def jsend(obj, status=200, ctype="application/json"):
    return (status, {"Content-Type": ctype}, json.dumps(obj).encode())


def script_upload(hub, modes, actions):
    """Preupload answers with modes {path: mode}; the batch answers with
    actions {oid: actions or None}; the commit answers NEW."""
    hub.routes[API + "/preupload/main"] = lambda req: jsend({"files": [
        {"path": f["path"], "uploadMode": modes[f["path"]],
         "shouldIgnore": False}
        for f in json.loads(req["body"])["files"]]})
    hub.routes["/a/b.git/info/lfs/objects/batch"] = lambda req: jsend(
        {"transfer": "basic", "objects": [
            dict(o, **({"actions": actions[o["oid"]]}
                       if actions.get(o["oid"]) else {}))
            for o in json.loads(req["body"])["objects"]]},
        ctype="application/vnd.git-lfs+json")
    hub.routes[API + "/commit/main"] = jsend({"commitOid": NEW})


def test_requests_are_what_the_hub_expects(scripted, w):
    hub, cdn = scripted(), scripted()
    big = os.urandom(70_000)
    oid = hashlib.sha256(big).hexdigest()
    small = b"hello \xe2\x9c\x93\n"
    script_upload(hub, {"w.bin": "lfs", "dir/s m\u00e4ll.txt": "regular",
                        "empty.bin": "lfs"}, {oid: {
        "upload": {"href": cdn.url + "/put/" + oid + "?sig=1",
                   "header": {"x-amz-meta-x": "1",
                              "Authorization": "Bearer from-the-answer"}},
        "verify": {"href": hub.url + "/verify",
                   "header": {"Authorization": "Bearer from-the-answer",
                              "X-Verify": "v"}}}})
    cdn.routes["/put/" + oid] = (200, {"ETag": '"x"'}, b"")
    hub.routes["/verify"] = jsend({})
    r = probe(hub.url, "a/b", *w.args(P, [("w.bin", big),
                                          ("dir/s m\u00e4ll.txt", small),
                                          ("empty.bin", b"")],
                                      deletes=["old \"q\".txt"],
                                      folders=["gone"],
                                      summary="S\u00fcmmary"))
    assert r.rc == 0, r
    assert r.lines == [NEW]

    pre = hub.requests(API + "/preupload/main")[0]
    assert pre["method"] == "POST"
    assert pre["headers"]["Authorization"] == "Bearer " + WRITE
    assert pre["headers"]["Content-Type"] == "application/json"
    assert "Expect" not in pre["headers"]
    assert json.loads(pre["body"]) == {"files": [
        {"path": "w.bin", "size": len(big),
         "sample": base64.b64encode(big[:512]).decode()},
        {"path": "dir/s m\u00e4ll.txt", "size": len(small),
         "sample": base64.b64encode(small).decode()},
        {"path": "empty.bin", "size": 0, "sample": ""}]}

    batch = hub.requests("/a/b.git/info/lfs/objects/batch")
    assert len(batch) == 1	# the empty file is regular whatever the Hub said
    b = batch[0]
    assert b["headers"]["Accept"] == "application/vnd.git-lfs+json"
    assert b["headers"]["Content-Type"] == "application/vnd.git-lfs+json"
    assert b["headers"]["Authorization"] == "Bearer " + WRITE
    assert json.loads(b["body"]) == {
        "operation": "upload", "transfers": ["basic", "multipart"],
        "hash_algo": "sha256", "objects": [{"oid": oid, "size": len(big)}],
        "ref": {"name": "main"}}

    put = cdn.seen[0]
    assert put["method"] == "PUT" and put["query"] == "sig=1"
    assert put["body"] == big
    assert put["headers"]["Content-Length"] == str(len(big))
    assert put["headers"]["x-amz-meta-x"] == "1"
    assert "Authorization" not in put["headers"]

    v = hub.requests("/verify")[0]
    # Our own token to our own origin, never the one in the answer.
    assert v["headers"]["Authorization"] == "Bearer " + WRITE
    assert v["headers"]["X-Verify"] == "v"
    assert json.loads(v["body"]) == {"oid": oid, "size": len(big)}

    c = hub.requests(API + "/commit/main")[0]
    assert c["headers"]["Content-Type"] == "application/x-ndjson"
    assert c["headers"]["Authorization"] == "Bearer " + WRITE
    assert c["headers"]["Content-Length"] == str(len(c["body"]))
    assert c["body"].endswith(b"\n")
    lines = [json.loads(x) for x in c["body"].split(b"\n") if x]
    assert lines == [
        {"key": "header", "value": {"summary": "S\u00fcmmary",
                                    "description": "", "parentCommit": P}},
        {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256",
                                     "oid": oid, "size": len(big)}},
        {"key": "file", "value": {
            "path": "dir/s m\u00e4ll.txt", "encoding": "base64",
            "content": base64.b64encode(small).decode()}},
        {"key": "file", "value": {"path": "empty.bin", "encoding": "base64",
                                  "content": ""}},
        {"key": "deletedFile", "value": {"path": "old \"q\".txt"}},
        {"key": "deletedFolder", "value": {"path": "gone"}},
    ]


def test_large_inline_file_is_streamed(scripted, w):
    hub = scripted()
    # Many base64 chunks and a padded end; its body would be 64 MiB.
    data = os.urandom(48 * MiB + 7)
    script_upload(hub, {"big.txt": "regular"}, {})
    base = probe(hub.url, "a/b", "check-write", "main")
    assert base.rc == 0, base
    r = probe(hub.url, "a/b", *w.args(P, [("big.txt", data)]), timeout=300)
    assert r.rc == 0, r
    c = hub.requests(API + "/commit/main")[0]
    line = json.loads(c["body"].split(b"\n")[1])
    assert base64.b64decode(line["value"]["content"]) == data
    grown = r.stats()["maxrss_kb"] - base.stats()["maxrss_kb"]
    assert grown < 16 * 1024, grown


def test_verify_on_another_origin_gets_no_token(scripted, w):
    hub, cdn, other = scripted(), scripted(), scripted()
    data = b"\0lfs"
    oid = hashlib.sha256(data).hexdigest()
    script_upload(hub, {"w.bin": "lfs"}, {oid: {
        "upload": {"href": cdn.url + "/put"},
        "verify": {"href": other.url + "/verify"}}})
    cdn.routes["/put"] = (200, {}, b"")
    other.routes["/verify"] = jsend({})
    r = probe(hub.url, "a/b", *w.args(P, [("w.bin", data)]))
    assert r.rc == 0, r
    assert "Authorization" not in other.seen[0]["headers"]
    assert "Authorization" not in cdn.seen[0]["headers"]


def test_multipart_wire_format(scripted, w):
    hub, cdn = scripted(), scripted()
    data = os.urandom(10_000)
    oid = hashlib.sha256(data).hexdigest()
    header = {"chunk_size": "4000", "x-extra": "e"}
    for i in (3, 1, 2):
        header["%05d" % i] = "%s/part/%d?sig=%d" % (cdn.url, i, i)
        cdn.routes["/part/%d" % i] = (200, {"ETag": '"etag-%d"' % i}, b"")
    script_upload(hub, {"w.bin": "lfs"}, {oid: {
        "upload": {"href": hub.url + "/complete/" + oid + "?s=1",
                   "header": header}}})
    hub.routes["/complete/" + oid] = jsend({"success": True})
    r = probe(hub.url, "a/b", *w.args(P, [("w.bin", data)], parallel=3))
    assert r.rc == 0, r
    got = {}
    for req in cdn.seen:
        n = int(req["path"].rsplit("/", 1)[1])
        got[n] = req["body"]
        assert req["method"] == "PUT" and req["query"] == "sig=%d" % n
        assert req["headers"]["x-extra"] == "e"
        assert "chunk_size" not in req["headers"]
        assert not any(k.isdigit() for k in req["headers"])
        assert "Authorization" not in req["headers"]
    assert got == {1: data[:4000], 2: data[4000:8000], 3: data[8000:]}
    done = hub.requests("/complete/" + oid)[0]
    assert "Authorization" not in done["headers"]
    assert done["headers"]["Content-Type"] == "application/vnd.git-lfs+json"
    assert json.loads(done["body"]) == {"oid": oid, "parts": [
        {"partNumber": i, "etag": '"etag-%d"' % i} for i in (1, 2, 3)]}


@pytest.mark.parametrize("case", ["too-few-parts", "no-etag", "refused",
                                  "not-answered", "token-header"])
def test_bad_lfs_answers_fail_before_any_commit(scripted, w, case):
    hub, cdn = scripted(), scripted()
    data = os.urandom(10_000)
    oid = hashlib.sha256(data).hexdigest()
    header = {"chunk_size": "4000", "1": cdn.url + "/part/1",
              "2": cdn.url + "/part/2", "3": cdn.url + "/part/3"}
    for i in (1, 2, 3):
        cdn.routes["/part/%d" % i] = (200, {"ETag": '"e"'}, b"")
    actions = {"upload": {"href": hub.url + "/complete", "header": header}}
    script_upload(hub, {"w.bin": "lfs"}, {oid: actions})
    hub.routes["/complete"] = jsend({})
    message = {"too-few-parts": "ceil(size / chunk_size)",
               "no-etag": "without a usable ETag",
               "refused": "the Hub refused LFS object %s" % oid,
               "not-answered": "says nothing about object %s" % oid,
               "token-header": "not plain text"}[case]
    if case == "too-few-parts":
        del header["3"]
    elif case == "no-etag":
        cdn.routes["/part/2"] = (200, {}, b"")
    elif case == "token-header":
        header["X-Evil"] = "a\r\nAuthorization: Bearer x"
    else:
        hub.routes["/a/b.git/info/lfs/objects/batch"] = jsend(
            {"objects": [{"oid": oid, "size": len(data), "error": {
                "code": 422, "message": "Nope"}}] if case == "refused"
             else []})
    r = probe(hub.url, "a/b", *w.args(P, [("w.bin", data)]),
              opts=("--retries", "0"))
    assert r.rc == 1 and message in r.err, r
    assert hub.requests(API + "/commit/main") == []
    assert hub.requests("/complete") == []
    if case != "no-etag":
        assert cdn.seen == []


def test_answers_are_capped(scripted):
    hub = scripted()
    hub.routes[API + "/preupload/main"] = (
        200, {}, b'{"files":[],"pad":"' + b"x" * (2 * MiB) + b'"}')
    r = probe(hub.url, "a/b", "check-write", "main")
    assert r.rc == 1 and "larger than 1048576 bytes" in r.err, r
    assert "File too large" in r.err
    assert r.stats()["bytes"] <= 1 * MiB + 256 * 1024


def test_commit_answer_must_name_a_commit(scripted, w):
    hub = scripted()
    script_upload(hub, {"a.txt": "regular"}, {})
    hub.routes[API + "/commit/main"] = jsend({"commitOid": "nope"})
    r = probe(hub.url, "a/b", *w.args(P, [("a.txt", b"x")]))
    assert r.rc == 1 and "no valid commit id" in r.err
    assert r.stats()["commits"] == 0


def test_commits_listing_stays_on_the_hub(scripted):
    hub, other = scripted(), scripted()
    page = [{"id": P, "title": "t", "message": "t",
             "date": "2024-01-01T00:00:00Z"}]
    hub.routes[API + "/commits/main"] = (200, {
        "Link": '<%s%s/commits/main?p=1>; rel="next"' % (other.url, API)},
        json.dumps(page).encode())
    r = probe(hub.url, "a/b", "commits", "main", 10)
    assert r.rc == 1 and "not on the Hub's origin" in r.err
    assert other.seen == []
    hub.routes[API + "/commits/main"] = (200, {
        "Link": '<%s%s/commits/main?limit=10>; rel="next"' % (hub.url, API)},
        json.dumps(page).encode())
    r = probe(hub.url, "a/b", "commits", "main", 10)
    assert r.rc == 1 and "links a page to itself" in r.err


def test_write_refusals_map_to_eacces(scripted, w):
    hub = scripted()
    hub.routes[API + "/preupload/main"] = jsend(
        {"error": "You don't have the rights"}, status=403)
    r = probe(hub.url, "a/b", "check-write", "main")
    assert r.rc == 1 and EACCES in r.err
    assert "the token cannot write to models/a/b (HTTP 403: You don't " \
        "have the rights)" in r.err
    hub.routes[API + "/preupload/main"] = jsend({"error": "x"}, status=401)
    r = probe(hub.url, "a/b", "check-write", "main")
    assert r.rc == 1 and EACCES in r.err
    script_upload(hub, {"a.txt": "regular"}, {})
    hub.routes[API + "/commit/main"] = jsend({"error": "no"}, status=403)
    r = probe(hub.url, "a/b", *w.args(P, [("a.txt", b"x")]))
    assert r.rc == 1 and EACCES in r.err and "cannot write" in r.err
    hub.routes[API + "/commit/main"] = jsend({"error": "exists"}, status=409)
    r = probe(hub.url, "a/b", *w.args(P, [("a.txt", b"x")]))
    assert r.rc == 1 and "File exists" in r.err


# --- last: nothing ever carried the token to the CDN -------------------------

def test_no_cdn_request_ever_carried_the_token(hub):
    cdn = [e for e in hub.log_since(0) if e["origin"] == "cdn"]
    assert cdn, "the module made no CDN request"
    assert not [e for e in cdn if e["auth"]]
    assert hub.leaks() == []
