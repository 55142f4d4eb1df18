"""Nothing written is lost: kill -9 of the daemon at each point of a
commit, faults injected into every upload step, and a full disk while
staging.  After each, the branch holds exactly the changes, committed
exactly once."""

import errno
import hashlib
import os
import subprocess
import threading
import time

import pytest

from conftest import HUBFS, WRITE
from writeutil import (commits, final_metric, fsync, head, no_faults,
                       read, repo,
                       small_disk, tree, wait_for,
                       write)

pytestmark = pytest.mark.usefixtures("no_faults")
assert repo and small_disk and no_faults	# fixtures, used by name

MiB = 1 << 20


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def assert_on_branch(hub, repo, files):
    """Each path of files is on the branch with exactly these bytes: the
    LFS sha256 or the git blob id, as the Hub lists them."""
    t = tree(hub, repo)
    for path, data in files.items():
        e = t[path]
        assert e["size"] == len(data), path
        if e.get("lfs"):
            assert e["lfs"]["oid"] == hashlib.sha256(data).hexdigest(), path
        else:
            assert e["oid"] == git_blob_id(data), path


def pending(m):
    return os.getxattr(m.mnt, "user.hubfs.pending").decode().splitlines()


class Fsync(threading.Thread):
    """fsync in the background: it may block on a stalled request."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.error = None
        self.start()

    def run(self):
        try:
            fsync(self.path)
        except OSError as e:
            self.error = e


def fired(hub, name):
    return [f for f in hub.admin("GET", "/faults")
            if f["name"] == name][0]["fired"]


def test_kill_while_writing_keeps_what_was_written(hub, repo, mount_factory,
                                                   tmp_path):
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE,
                      cache_dir=cache)
    n0 = len(commits(hub, repo))
    data = os.urandom(3 * MiB + 5)
    f = open(m.path("partial.bin"), "wb", buffering=0)
    for off in range(0, len(data), 256 * 1024):
        f.write(data[off:off + 256 * 1024])
    # Every write() returned, the file is still open: kill -9.
    m.kill()
    try:
        f.close()
    except OSError:
        pass
    m2 = mount_factory(hub, repo, token=WRITE, cache_dir=cache)
    assert read(m2.path("partial.bin")) == data
    assert pending(m2) == ["modified partial.bin"]
    fsync(m2.mnt)
    assert len(commits(hub, repo)) == n0 + 1
    assert_on_branch(hub, repo, {"partial.bin": data})


def test_a_lost_staged_file_is_reported_and_the_rest_restored(
        hub, repo, mount_factory, tmp_path):
    """A change whose staged copy is lost is listed as unshown, never
    committed and never silently dropped; "resolve theirs" drops it, but
    not a change written again at its path since."""
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE,
                      cache_dir=cache)
    kept, lost = os.urandom(MiB + 3), os.urandom(2 * MiB + 7)
    again, again2 = os.urandom(3 * MiB + 1), os.urandom(MiB + 11)
    write(m.path("kept.bin"), kept)
    write(m.path("lost.bin"), lost)
    write(m.path("again.bin"), again)
    m.kill()
    # The staged copies of lost.bin and again.bin disappear while nothing
    # is mounted.
    staged = [os.path.join(d, f) for d, _, fs in
              os.walk(os.path.join(cache, "staging")) for f in fs
              if os.path.getsize(os.path.join(d, f)) in (len(lost),
                                                           len(again))]
    assert len(staged) == 2, staged
    for f in staged:
        os.unlink(f)
    # No commit of its own: each comes from an fsync below.
    m2 = mount_factory(hub, repo, "commit_delay=600000", token=WRITE,
                       cache_dir=cache)
    assert "cannot restore the staged content of lost.bin" in m2.errors()
    assert "cannot restore the staged content of again.bin" in m2.errors()
    assert read(m2.path("kept.bin")) == kept
    assert not os.path.exists(m2.path("lost.bin"))
    assert not os.path.exists(m2.path("again.bin"))
    assert sorted(pending(m2)) == ["modified kept.bin", "unshown again.bin",
                                   "unshown lost.bin"]
    fsync(m2.mnt)
    assert_on_branch(hub, repo, {"kept.bin": kept})
    assert "lost.bin" not in tree(hub, repo)
    # The lost changes stay listed, not silently dropped, and "hubfs
    # commit" does not claim that everything is committed.
    assert sorted(pending(m2)) == ["unshown again.bin", "unshown lost.bin"]
    r = subprocess.run([HUBFS, "commit", m2.mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 1, r
    assert b"2 changes could not be restored" in r.stderr, r
    # "ours" cannot commit what is lost.
    with pytest.raises(OSError) as e:
        os.setxattr(m2.mnt, "user.hubfs.resolve", b"ours")
    assert e.value.errno == errno.EINVAL
    # again.bin is written anew: a new change, which "theirs" keeps.
    write(m2.path("again.bin"), again2)
    assert sorted(pending(m2)) == ["modified again.bin", "unshown lost.bin"]
    os.setxattr(m2.mnt, "user.hubfs.resolve", b"theirs")
    assert pending(m2) == ["modified again.bin"]
    fsync(m2.mnt)
    assert_on_branch(hub, repo, {"kept.bin": kept, "again.bin": again2})
    assert "lost.bin" not in tree(hub, repo)
    assert pending(m2) == []
    r = subprocess.run([HUBFS, "commit", m2.mnt], stdout=subprocess.PIPE,
                       timeout=120)
    assert r.returncode == 0 and b"everything is committed" in r.stdout, r
    m2.stop()
    # Dropped for good: the next mount has nothing to restore.
    m3 = mount_factory(hub, repo, token=WRITE, cache_dir=cache)
    assert pending(m3) == []
    assert "cannot restore" not in m3.errors()


# (name, fault rule): the daemon is killed while this request is held.
# A stall with after_bytes 0 holds the request before the Hub handles it;
# with after_bytes 1 the Hub has handled it and the answer is held.
CRASH_POINTS = [
    ("preupload", {"route": "preupload", "action": "stall", "seconds": 30}),
    ("lfs-batch", {"route": "lfs-batch", "action": "stall", "seconds": 30}),
    ("upload", {"route": "cdn-put", "action": "stall", "seconds": 30}),
    ("commit-sent", {"route": "commit", "action": "stall", "seconds": 3}),
    ("commit-made", {"route": "commit", "action": "stall", "seconds": 30,
                     "after_bytes": 1}),
]


@pytest.mark.parametrize("name,fault", CRASH_POINTS,
                         ids=[c[0] for c in CRASH_POINTS])
def test_kill_during_a_commit_then_remount_commits_once(
        hub, repo, mount_factory, tmp_path, name, fault):
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE,
                      cache_dir=cache)
    parent = head(hub, repo)
    n0 = len(commits(hub, repo))
    files = {"ckpt/weights.bin": os.urandom(2 * MiB + 1),
             "ckpt/meta.json": b'{"step": 7}\n'}
    os.mkdir(m.path("ckpt"))
    for p, data in files.items():
        write(m.path(p), data)
    hub.admin("POST", "/faults", dict(fault, name=name, times=1))
    t = Fsync(m.mnt)
    assert wait_for(lambda: fired(hub, name) == 1, 30)
    time.sleep(0.3)
    m.kill()
    t.join(30)
    assert not t.is_alive() and t.error is not None
    if name == "commit-made":
        assert len(commits(hub, repo)) == n0 + 1	# made, answer lost
    if name == "commit-sent":
        time.sleep(3)	# the held request is handled after the crash
    m2 = mount_factory(hub, repo, token=WRITE, cache_dir=cache)
    for p, data in files.items():
        assert read(m2.path(p)) == data
    fsync(m2.mnt)
    # Exactly one commit, on top of the commit the mount showed.
    log = commits(hub, repo)
    assert len(log) == n0 + 1, [c["title"] for c in log]
    assert log[1]["id"] == parent
    assert_on_branch(hub, repo, files)
    assert pending(m2) == []
    if name.startswith("commit-"):
        assert "was made by an earlier attempt" in m2.errors()
    assert m2.stop() == 0
    assert len(commits(hub, repo)) == n0 + 1


# Transient faults on every step of a commit made through the mount: the
# fsync succeeds, with exactly one commit.
TRANSIENT = [
    ("preupload-503", {"route": "preupload", "status": 503, "times": 2}),
    ("batch-429", {"route": "lfs-batch", "status": 429, "retry_after": 1,
                   "times": 1}),
    ("batch-reset", {"route": "lfs-batch", "action": "reset",
                     "after_bytes": 10, "times": 1}),
    ("put-503", {"route": "cdn-put", "status": 503, "times": 2}),
    ("put-reset", {"route": "cdn-put", "action": "reset", "times": 1}),
    ("verify-502", {"route": "lfs-verify", "status": 502, "times": 1}),
    ("commit-503", {"route": "commit", "status": 503, "times": 2}),
    ("commit-429", {"route": "commit", "status": 429, "retry_after": 1,
                    "times": 1}),
    # Made by the Hub, the answer cut: the retry gets 412, and the
    # history shows the first one landed.
    ("commit-answer-reset", {"route": "commit", "action": "reset",
                             "after_bytes": 1, "times": 1}),
    # With multipart uploads (the server's threshold lowered to 1 MiB).
    ("part-503", {"route": "cdn-part", "status": 503, "times": 2}),
    ("part-reset", {"route": "cdn-part", "action": "reset", "times": 1}),
    ("complete-503", {"route": "lfs-complete", "status": 503, "times": 1}),
]


@pytest.mark.parametrize("name,fault", TRANSIENT, ids=[t[0] for t in TRANSIENT])
def test_transient_faults_during_a_commit(hub, repo, mount_factory, name,
                                          fault):
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    n0 = len(commits(hub, repo))
    files = {"w.bin": os.urandom(3 * MiB + 3), "notes.md": b"# notes\n"}
    for p, data in files.items():
        write(m.path(p), data)
    hub.admin("POST", "/faults", dict(fault, name=name))
    multipart = fault["route"] in ("cdn-part", "lfs-complete")
    if multipart:
        hub.admin("POST", "/config", {"multipart_threshold": MiB,
                                      "multipart_chunk": 512 * 1024})
    try:
        fsync(m.mnt)
    finally:
        if multipart:
            hub.admin("POST", "/config", {"multipart_threshold": 64 * MiB,
                                          "multipart_chunk": 16 * MiB})
    assert fired(hub, name) == fault["times"]
    assert len(commits(hub, repo)) == n0 + 1
    assert_on_branch(hub, repo, files)
    assert pending(m) == []


def test_commit_that_keeps_failing_reports_and_keeps_the_data(
        hub, repo, mount_factory, tmp_path):
    prom = str(tmp_path / "hubfs.prom")
    m = mount_factory(hub, repo, "commit_delay=600000",
                      "metrics_file=" + prom, token=WRITE)
    n0 = len(commits(hub, repo))
    data = os.urandom(MiB)
    write(m.path("kept.bin"), data)
    # The first try and every retry of the client fail.
    hub.admin("POST", "/faults", {"route": "commit", "status": 503,
                                  "times": 6, "name": "down"})
    with pytest.raises(OSError) as e:
        fsync(m.path("kept.bin"))
    assert e.value.errno == errno.EIO
    assert "commit to main failed" in m.errors()
    assert "the changes stay staged" in m.errors()
    assert len(commits(hub, repo)) == n0
    assert pending(m) == ["modified kept.bin"]
    assert read(m.path("kept.bin")) == data
    # The Hub is back: the next fsync commits it.
    fsync(m.path("kept.bin"))
    assert len(commits(hub, repo)) == n0 + 1
    assert_on_branch(hub, repo, {"kept.bin": data})
    # The counts written at unmount, after the committer stopped, still
    # hold the failed round.
    assert m.stop() == 0
    assert final_metric(prom, "commit_failures_total") >= 1


def test_full_disk_while_staging_is_enospc(hub, repo, mount_factory,
                                           small_disk):
    m = mount_factory(hub, repo, "commit_delay=600000", "cache_size=4M",
                      token=WRITE, cache_dir=small_disk)
    n0 = len(commits(hub, repo))
    small = b"small and safe\n"
    write(m.path("small.txt"), small)
    chunk = os.urandom(MiB)
    written = 0
    with pytest.raises(OSError) as e:
        with open(m.path("huge.bin"), "wb", buffering=0) as f:
            for _ in range(128):
                f.write(chunk)
                written += len(chunk)
    assert e.value.errno == errno.ENOSPC
    assert 0 < written < 64 * MiB
    # What was written before is intact, the mount still works.
    assert read(m.path("small.txt")) == small
    got = read(m.path("huge.bin"))
    assert got == (chunk * 128)[:len(got)]
    # Freeing the space lets the rest go through.
    os.unlink(m.path("huge.bin"))
    write(m.path("after.txt"), b"after\n")
    fsync(m.mnt)
    assert len(commits(hub, repo)) == n0 + 1
    assert_on_branch(hub, repo, {"small.txt": small, "after.txt": b"after\n"})
    assert "huge.bin" not in tree(hub, repo)
