"""Edge cases of the write path, each once a bug: reads past a base
file's old end, a file that replaces a directory across a crash, block
bookkeeping after a failed commit or a failed write, and a rebase that
must see changes made while its commit was on the way."""

import base64
import errno
import json
import os
import subprocess
import threading

import pytest

from conftest import WRITE
from writeutil import (SHARD1, commits, fsync, no_faults, read, repo,
                       small_disk, tree, wait_for,
                       write)

pytestmark = pytest.mark.usefixtures("no_faults")
assert repo and small_disk and no_faults	# fixtures, used by name

MiB = 1 << 20


def test_read_past_the_old_end_after_an_extending_truncate(
        hub, repo, mount_factory):
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    p = m.path("config.json")
    orig = read(p)
    assert len(orig) < MiB
    os.truncate(p, 2 * MiB)
    r = subprocess.run(["dd", "if=" + p, "of=/dev/stdout", "bs=64k",
                        "count=1"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=20)
    assert r.returncode == 0
    assert r.stdout == (orig + b"\0" * 65536)[:65536]
    assert read(p) == orig + b"\0" * (2 * MiB - len(orig))


def test_a_file_that_replaced_a_directory_survives_a_crash(
        hub, repo, mount_factory, tmp_path):
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE,
                      cache_dir=cache)
    os.mkdir(m.path("x"))
    write(m.path("x", "y"), b"yyy\n")
    fsync(m.mnt)
    os.unlink(m.path("x", "y"))
    os.rmdir(m.path("x"))
    write(m.path("x"), b"now a file\n")
    m.kill()
    m2 = mount_factory(hub, repo, "commit_delay=600000", token=WRITE,
                       cache_dir=cache)
    assert read(m2.path("x")) == b"now a file\n"
    write(m2.path("other.txt"), b"o\n")
    fsync(m2.mnt)
    t = tree(hub, repo)
    assert "x" in t and "x/y" not in t and "other.txt" in t
    assert os.getxattr(m2.mnt, "user.hubfs.pending") == b""


def test_writes_after_a_failed_commit_survive_a_crash(
        hub, repo, mount_factory, tmp_path):
    """The failed round filled the file's blocks; a later write must still
    journal what it changed."""
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE,
                      cache_dir=cache)
    p = m.path(SHARD1)
    want = bytearray(read(p))
    fd = os.open(p, os.O_WRONLY)
    try:
        os.pwrite(fd, b"A" * 10, 5)
        want[5:15] = b"A" * 10
        hub.admin("POST", "/faults", {"route": "preupload", "status": 400,
                                      "times": 1})
        with pytest.raises(OSError):
            os.fsync(fd)
        hub.admin("DELETE", "/faults")
        os.pwrite(fd, b"B" * 10, 2 * MiB + 7)
        want[2 * MiB + 7:2 * MiB + 17] = b"B" * 10
        assert read(p) == bytes(want)
        m.kill()
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    m2 = mount_factory(hub, repo, token=WRITE, cache_dir=cache)
    assert read(m2.path(SHARD1)) == bytes(want)


def test_a_write_after_a_failed_write_survives_a_crash(
        hub, repo, mount_factory, small_disk):
    """A write across two blocks fills the first from the base, then the
    disk is full for the second: the filled block must reach the journal
    with the next write, even one that fills nothing."""
    cache = os.path.join(small_disk, "cache")
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE,
                      cache_dir=cache)
    want = bytearray(read(m.path(SHARD1)))	# all of it in the cache
    fd = os.open(m.path(SHARD1), os.O_RDWR)
    try:
        st = os.statvfs(small_disk)
        filler = os.path.join(small_disk, "filler")
        write(filler, b"\0" * (st.f_bavail * st.f_frsize - int(1.5 * MiB)))
        with pytest.raises(OSError) as e:
            os.pwrite(fd, b"X" * 10, MiB - 5)
        assert e.value.errno == errno.ENOSPC
        os.unlink(filler)
        os.pwrite(fd, b"Y" * 10, 100)
        want[100:110] = b"Y" * 10
        assert os.pread(fd, 10, 100) == b"Y" * 10
        m.kill()
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    m2 = mount_factory(hub, repo, token=WRITE, cache_dir=cache)
    assert read(m2.path(SHARD1)) == bytes(want)
    m2.stop()


def upstream_commit(hub, repo, path, data):
    lines = [{"key": "header", "value": {"summary": "upstream " + path}},
             {"key": "file", "value": {
                 "path": path, "encoding": "base64",
                 "content": base64.b64encode(data).decode()}}]
    body = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
    r = hub.request("POST", "/api/models/%s/commit/main" % repo, token=WRITE,
                    headers={"Content-Type": "application/x-ndjson"},
                    body=body)
    assert r.status == 200, r


def test_a_rebase_sees_changes_made_during_its_round(hub, repo,
                                                      mount_factory):
    """While a commit of mine.txt is on its way, config.json changes both
    locally and upstream: the rebase must report the conflict, not
    commit the local config.json over the upstream one."""
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    write(m.path("mine.txt"), b"mine\n")
    hub.admin("POST", "/faults", {"name": "st", "route": "preupload",
                                  "action": "stall", "seconds": 3,
                                  "times": 1})
    res = {}

    def bg():
        try:
            fsync(m.path("mine.txt"))
            res["ok"] = True
        except OSError as e:
            res["err"] = e.errno
    t = threading.Thread(target=bg)
    t.start()
    assert wait_for(lambda: [f for f in hub.admin("GET", "/faults")
                             if f["name"] == "st"][0]["fired"] == 1, 20)
    write(m.path("config.json"), b'{"local": 1}\n')
    upstream_commit(hub, repo, "config.json", b'{"upstream": 1}\n')
    t.join(60)
    assert res == {"err": errno.ESTALE}
    assert "config.json was changed upstream" in m.errors()
    r = hub.get("/%s/resolve/main/config.json" % repo)
    assert r.body == b'{"upstream": 1}\n'
    assert commits(hub, repo)[0]["title"] == "upstream config.json"
    assert read(m.path("config.json")) == b'{"local": 1}\n'


def test_a_file_the_hub_ignores_fails_the_commit_and_stays(
        hub, repo, mount_factory):
    """The Hub answers shouldIgnore for paths of the repository's
    .gitignore: the file is not silently dropped; the commit fails with a
    log line naming it, and goes through once it is renamed."""
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    write(m.path(".gitignore"), b"*.tmp\n")
    fsync(m.mnt)
    n0 = len(commits(hub, repo))
    write(m.path("scratch.tmp"), b"scratch\n")
    write(m.path("kept.txt"), b"kept\n")
    with pytest.raises(OSError) as e:
        fsync(m.mnt)
    assert e.value.errno == errno.EIO
    assert "the Hub ignores scratch.tmp" in m.errors()
    assert len(commits(hub, repo)) == n0
    assert read(m.path("scratch.tmp")) == b"scratch\n"
    os.rename(m.path("scratch.tmp"), m.path("scratch.txt"))
    fsync(m.mnt)
    assert len(commits(hub, repo)) == n0 + 1
    t = tree(hub, repo)
    assert "scratch.txt" in t and "kept.txt" in t and "scratch.tmp" not in t


def test_a_committed_file_larger_than_the_cache_reads_back_whole(
        hub, repo, mount_factory, tmp_path):
    # Taking the landed file into a 4 MiB cache fails part way: the
    # blocks that fit are kept, the rest released.  No block may then be
    # filled from what was released.
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, repo, "cache_size=4M", token=WRITE,
                      cache_dir=cache)
    data = os.urandom(9 * MiB + 123)
    write(m.path("big.bin"), data)
    fsync(m.path("big.bin"))
    assert tree(hub, repo)["big.bin"]["size"] == len(data)
    assert read(m.path("big.bin")) == data
    m.stop()
    m2 = mount_factory(hub, repo, "cache_size=4M", token=WRITE,
                       cache_dir=cache)
    assert read(m2.path("big.bin")) == data
