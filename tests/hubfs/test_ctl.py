"""The control command (hubfs status, metrics, pending, commit, resolve,
prefetch, cache) and the metrics file, against live mounts with traffic
the test knows, checked against the local Hub's request log."""

import hashlib
import os
import re
import sqlite3
import subprocess

import pytest

from conftest import BLOCK, BOB, CAROL, HUBFS, READ, WRITE
from writeutil import (commits, js_commit, no_faults, read, repo, tree,
                       wait_for, write)

pytestmark = pytest.mark.usefixtures("no_faults")
assert repo and no_faults	# fixtures, used by name

SHARD1 = "model-00001-of-00002.safetensors"
TOKENS = (WRITE, READ, BOB, CAROL)
OUTPUTS = []	# everything the command printed, checked for tokens


def hubfs(*args, ok=True):
    r = subprocess.run([HUBFS] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    out, err = r.stdout.decode(), r.stderr.decode()
    OUTPUTS.append(out + err)
    if ok:
        assert r.returncode == 0, (args, out, err)
    return r.returncode, out, err


@pytest.fixture(autouse=True, scope="module")
def no_token_in_output():
    yield
    assert OUTPUTS
    for text in OUTPUTS:
        for tok in TOKENS:
            assert tok not in text


SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+]+)$')


def metrics(text):
    """Parse Prometheus text; every sample must have HELP and TYPE."""
    helped, typed, values = set(), {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge")
            typed[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, line
            # Every sample names its mount.
            assert 'mountpoint="' in (m.group(2) or ""), line
            name = m.group(1)
            assert name in helped and name in typed, name
            if typed[name] == "counter":
                assert name.endswith("_total"), name
            values[name] = float(m.group(3))
    return values


def hub_requests(hub, since):
    return [e for e in hub.admin("GET", "/log?since=%d" % since)["entries"]]


def log_mark(hub):
    return hub.admin("GET", "/log?since=0")["last"]


def test_status_and_metrics_count_known_traffic(hub, mount_factory,
                                                tmp_path):
    prom = str(tmp_path / "hubfs.prom")
    m = mount_factory(hub, "tester/model1", "ro", "refresh=0",
                      "metrics_file=" + prom, token=READ)
    rc, out, _ = hubfs("status", m.mnt)
    commit = os.getxattr(m.mnt, "user.hubfs.commit").decode()
    assert "repository: models/tester/model1" in out
    assert "commit:     " + commit in out
    assert "mode:       read-only" in out
    assert "mountpoint: " + m.mnt in out
    # Any path inside the mount names it.
    inner = hubfs("status", m.path("config.json"))[1]
    assert inner.split("uptime:")[0] == out.split("uptime:")[0]
    before = metrics(hubfs("metrics", m.mnt)[1])
    assert before["hubfs_writable"] == 0
    mark = log_mark(hub)
    data = read(m.path(SHARD1))
    after = metrics(hubfs("metrics", m.mnt)[1])
    seen = hub_requests(hub, mark)
    assert seen, "the read fetched nothing"
    # Every request the Hub saw, and only those, is counted.
    assert after["hubfs_hub_requests_total"] - \
        before["hubfs_hub_requests_total"] == len(seen)
    assert after["hubfs_hub_received_bytes_total"] - \
        before["hubfs_hub_received_bytes_total"] >= len(data)
    assert after["hubfs_read_bytes_total"] - \
        before["hubfs_read_bytes_total"] == len(data)
    assert after["hubfs_cache_misses_total"] > before[
        "hubfs_cache_misses_total"]
    assert after["hubfs_cache_used_bytes"] >= len(data)
    assert after["hubfs_hub_throttled_total"] == 0
    assert after["hubfs_pending_changes"] == 0
    info = [x for x in hubfs("metrics", m.mnt)[1].splitlines()
            if x.startswith("hubfs_info{")][0]
    assert 'repo="models/tester/model1"' in info
    assert 'commit="%s"' % commit in info
    assert 'hubfs_read_bytes_total{mountpoint="%s"} %d' % (
        m.mnt, after["hubfs_read_bytes_total"]) in hubfs("metrics", m.mnt)[1]
    # Nothing to commit on a read-only mount, and it says so.
    assert "read-only: nothing to commit" in hubfs("commit", m.mnt)[1]
    # Throttling shows as retries and 429s.
    hub.admin("POST", "/faults", {"path": "tokenizer", "status": 429,
                                  "times": 1, "name": "slow-down",
                                  "retry_after": "0"})
    read(m.path("tokenizer.json"))
    later = metrics(hubfs("metrics", m.mnt)[1])
    assert later["hubfs_hub_throttled_total"] == 1
    assert later["hubfs_hub_retries_total"] >= 1
    rc, out, _ = hubfs("status", m.mnt)
    assert "1 throttled (429)" in out
    # The metrics file holds the same metrics, and the final counts once
    # the mount is gone.
    m.stop()
    final = metrics(open(prom).read())
    assert set(final) == set(later)
    assert final["hubfs_read_bytes_total"] >= later["hubfs_read_bytes_total"]


def test_not_a_mount_and_usage_errors(tmp_path):
    rc, _, err = hubfs("status", str(tmp_path), ok=False)
    assert rc == 1 and "not in a hubfs mount" in err
    rc, _, err = hubfs("status", str(tmp_path / "missing"), ok=False)
    assert rc == 1 and "No such file" in err
    assert hubfs("status", ok=False)[0] == 2
    assert hubfs("prefetch", "-j", "0", str(tmp_path), ok=False)[0] == 2
    assert hubfs("cache", "wipe", str(tmp_path), ok=False)[0] == 2
    assert hubfs("cache", "gc", "--max", "lots", str(tmp_path),
                 ok=False)[0] == 2
    assert hubfs("resolve", "mine", str(tmp_path), ok=False)[0] == 2
    rc, _, err = hubfs("prefetch", str(tmp_path), ok=False)
    assert rc == 1 and "not in a hubfs mount" in err
    rc, _, err = hubfs("resolve", "ours", str(tmp_path), ok=False)
    assert rc == 1 and "not in a hubfs mount" in err


def test_pending_commit_and_resubmit(hub, repo, mount_factory):
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    assert hubfs("pending", m.mnt)[1] == "nothing pending\n"
    n0 = len(commits(hub, repo))
    write(m.path("a.txt"), b"alpha\n")
    os.unlink(m.path("config.json"))
    assert sorted(hubfs("pending", m.mnt)[1].splitlines()) == \
        ["deleted config.json", "modified a.txt"]
    out = hubfs("status", m.mnt)[1]
    assert "pending:    2 changes for " in out
    values = metrics(hubfs("metrics", m.mnt)[1])
    assert values["hubfs_pending_changes"] == 2
    assert values["hubfs_write_bytes_total"] == len(b"alpha\n")
    assert values["hubfs_write_requests_total"] == 1
    # A staged file's reads count too.
    with open(m.path("a.txt"), "rb") as f:
        assert f.read() == b"alpha\n"
    assert metrics(hubfs("metrics", m.mnt)[1])["hubfs_read_bytes_total"] \
        >= len(b"alpha\n")
    # A commit that keeps failing: the command says so, nothing is lost.
    hub.admin("POST", "/faults", {"route": "commit", "status": 503,
                                  "times": 6, "name": "down"})
    rc, _, err = hubfs("commit", m.mnt, ok=False)
    assert rc == 1 and "the changes stay staged" in err
    out = hubfs("status", m.mnt)[1]
    assert "1 failed" in out and "attempt failed" in out
    values = metrics(hubfs("metrics", m.mnt)[1])
    assert values["hubfs_commit_failures_total"] == 1
    assert values["hubfs_pending_changes"] == 2
    assert len(commits(hub, repo)) == n0
    # Re-submitted once the Hub is back.
    hub.admin("DELETE", "/faults")
    rc, out, _ = hubfs("commit", m.path("a.txt"))
    assert "everything is committed" in out
    assert hubfs("pending", m.mnt)[1] == "nothing pending\n"
    assert len(commits(hub, repo)) == n0 + 1
    files = tree(hub, repo)
    assert "a.txt" in files and "config.json" not in files
    values = metrics(hubfs("metrics", m.mnt)[1])
    assert values["hubfs_commits_total"] == 1
    assert values["hubfs_pending_changes"] == 0


def test_resolve_a_conflict(hub, repo, mount_factory, tmp_path,
                            js_client_dir):
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    write(m.path("both.txt"), b"local\n")
    js_commit(js_client_dir, hub, repo, "upstream", tmp_path,
              {"both.txt": b"upstream\n"})
    rc, _, err = hubfs("commit", m.mnt, ok=False)
    assert rc == 1 and "conflicts" in err and "hubfs resolve" in err
    assert hubfs("pending", m.mnt)[1] == "conflict both.txt\n"
    assert "1 in conflict" in hubfs("status", m.mnt)[1]
    assert metrics(hubfs("metrics", m.mnt)[1])["hubfs_conflicts"] == 1
    rc, _, err = hubfs("resolve", "ours", m.path("config.json"), ok=False)
    assert rc == 1 and "no conflict there" in err
    hubfs("resolve", "theirs", m.mnt)
    assert hubfs("pending", m.mnt)[1] == "nothing pending\n"
    assert wait_for(lambda: read(m.path("both.txt")) == b"upstream\n", 10)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_prefetch_then_read_without_the_network(hub, mount_factory,
                                                tmp_path):
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, "tester/model1", "ro", cache_dir=cache,
                      token=READ)

    def content_fetches(since):
        return [e for e in hub_requests(hub, since)
                if "/resolve/" in e["path"] or e["origin"] == "cdn"]
    mark = log_mark(hub)
    rc, out, _ = hubfs("prefetch", "-j", "3", m.mnt)
    assert content_fetches(mark), "the prefetch fetched nothing"
    names = sorted(os.listdir(m.mnt))
    files = [n for n in names if os.path.isfile(m.path(n))]
    below = [os.path.join(d, f) for d, _, fs in os.walk(m.mnt) for f in fs]
    assert out.startswith("prefetched %d files" % len(below)), out
    sums = {p: digest(p) for p in below}
    m.stop()
    # A new mount with the same cache fetches no file content.
    m2 = mount_factory(hub, "tester/model1", "ro", cache_dir=cache,
                       token=READ)
    mark = log_mark(hub)
    for p, s in sums.items():
        assert digest(p.replace(m.mnt, m2.mnt, 1)) == s
    assert content_fetches(mark) == []
    # Files and directories mixed, quiet.
    rc, out, _ = hubfs("prefetch", "-q", m2.path(files[0]), m2.mnt)
    assert out == ""
    rc, _, err = hubfs("prefetch", m2.path("missing"), m2.mnt, ok=False)
    assert rc == 1 and "missing" in err


def test_cache_show_gc_clear(hub, mount_factory, tmp_path):
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, "tester/model1", "ro", cache_dir=cache,
                      token=READ)
    hubfs("prefetch", "-q", m.mnt)
    shard = read(m.path(SHARD1))
    out = hubfs("cache", "show", m.mnt)[1]
    assert "cache dir:  %s\n" % cache in out
    assert "hit ratio:" in out
    used = metrics(hubfs("metrics", m.mnt)[1])["hubfs_cache_used_bytes"]
    assert used >= len(shard)
    # gc down to 1 MiB: least recently used blocks go, files still read
    # right (fetched again).
    out = hubfs("cache", "gc", "--max", "1M", m.mnt)[1]
    left = metrics(hubfs("metrics", m.mnt)[1])["hubfs_cache_used_bytes"]
    assert left <= 1 << 20
    assert "evicted:" in out
    with open(m.path(SHARD1), "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    assert read(m.path(SHARD1)) == shard
    # clear: everything not in use goes.  A file held open keeps its
    # blocks.
    with open(m.path(SHARD1), "rb") as held:
        held.read()
        out = hubfs("cache", "clear", m.mnt)[1]
        assert "kept:" in out
        assert metrics(hubfs("metrics", m.mnt)[1])[
            "hubfs_cache_used_bytes"] > 0
    out = hubfs("cache", "clear", m.mnt)[1]
    assert "holds:      0 B in 0 blocks" in out
    m.stop()
    # Stray bytes left by a crash: a data file no row names, and a block
    # whose row is gone.  gc on the cache directory itself releases them.
    m = mount_factory(hub, "tester/model1", "ro", cache_dir=cache,
                      token=READ)
    assert read(m.path(SHARD1)) == shard
    m.stop()
    db = sqlite3.connect(os.path.join(cache, "index.db"))
    key, = db.execute("SELECT key FROM blocks WHERE idx = 1").fetchone()
    db.execute("DELETE FROM blocks WHERE key = ? AND idx = 1", (key,))
    db.commit()
    db.close()
    data = os.path.join(cache, "data", key[:2], key)
    stray = os.path.join(cache, "data", "ab", "ab" + "0" * 62)
    os.makedirs(os.path.dirname(stray), exist_ok=True)
    with open(stray, "wb") as f:
        f.write(b"x" * 100000)
    blocks_before = os.stat(data).st_blocks
    out = hubfs("cache", "gc", cache)[1]
    assert "swept:      1 stray file," in out
    assert not os.path.exists(stray)
    # Exactly that block's bytes went; blocks with rows were kept.
    assert os.stat(data).st_blocks == blocks_before - BLOCK // 512
    # And the object still reads right: the punched block is fetched
    # again, and nothing else is.
    m = mount_factory(hub, "tester/model1", "ro", cache_dir=cache,
                      token=READ)
    assert read(m.path(SHARD1)) == shard
    values = metrics(hubfs("metrics", m.mnt)[1])
    assert values["hubfs_cache_damaged_blocks_total"] == 0
    assert BLOCK <= values["hubfs_hub_received_bytes_total"] < 2 * BLOCK


def test_log_level_and_debug_trace_hide_tokens(hub, mount_factory):
    """log_level=debug traces every request; no token, no signed URL."""
    m = mount_factory(hub, "tester/model1", "ro", "log_level=debug",
                      token=READ)
    read(m.path(SHARD1))
    m.stop()
    err = m.errors()
    assert "hubfs: debug:" in err
    assert READ not in err
    assert "X-Amz-Signature" not in err and "signature=" not in err.lower()
