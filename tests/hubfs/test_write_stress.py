"""A random-operation stress test of the write path, in the spirit of fsx:
writes at any offset, truncates, renames, unlinks, new files, fsyncs,
clean remounts and kill -9 remounts, every read checked against an
in-memory model, and at the end the branch itself checked against it.

HUBFS_STRESS_SECONDS sets how long it runs (default 20); HUBFS_STRESS_SEED
replays a run (the seed is printed when a check fails)."""

import errno
import hashlib
import os
import random
import time

from conftest import WRITE
from writeutil import fsync, repo, tree, wait_for

assert repo	# a fixture, used by name

DIRS = ["", "d1", "d2/sub"]
NAMES = ["a.bin", "b.txt", "c.json", "d.safetensors", "e.md"]
MAX_SIZE = 3 << 20


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Stress:
    def __init__(self, hub, repo, mount_factory, cache, seed):
        self.hub, self.repo = hub, repo
        self.mount_factory, self.cache = mount_factory, cache
        self.rng = random.Random(seed)
        self.seed = seed
        self.model = {}		# path -> bytearray, what the mount must show
        self.ops = []		# the log, for a failure message
        self.m = None
        self.mount()
        for path in self.walk():
            with open(self.m.path(path), "rb") as f:
                self.model[path] = bytearray(f.read())

    def mount(self):
        self.m = self.mount_factory(self.hub, self.repo, "commit_delay=300",
                                    token=WRITE, cache_dir=self.cache)

    def walk(self):
        out = []
        for root, dirs, files in os.walk(self.m.mnt):
            dirs[:] = [d for d in dirs if d != ".revisions"]
            for f in files:
                out.append(os.path.relpath(os.path.join(root, f),
                                           self.m.mnt))
        # The Hub itself adds LFS rules to .gitattributes.
        return [p for p in out if p != ".gitattributes"]

    def fail(self, what):
        raise AssertionError("seed %d: %s\nlast operations:\n  %s" % (
            self.seed, what, "\n  ".join(self.ops[-40:])))

    def random_path(self):
        return os.path.join(self.rng.choice(DIRS), self.rng.choice(NAMES))

    def some_file(self):
        return self.rng.choice(sorted(self.model)) if self.model else None

    def data(self, n):
        # Text for small files now and then, so both inline and LFS
        # uploads happen.
        if self.rng.random() < 0.3:
            return bytes(self.rng.choice(b"abc\n") for _ in range(n))
        return self.rng.randbytes(n)

    # --- operations ---------------------------------------------------------
    def op_write(self):
        path = self.some_file() or self.random_path()
        cur = self.model.get(path, bytearray())
        off = self.rng.randrange(0, min(len(cur) + 65536, MAX_SIZE))
        n = self.rng.choice([1, 100, 4096, 65536, 300000])
        n = min(n, MAX_SIZE - off)
        buf = self.data(n)
        self.ops.append("write %s off=%d len=%d" % (path, off, n))
        os.makedirs(os.path.dirname(self.m.path(path)), exist_ok=True)
        fd = os.open(self.m.path(path), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            assert os.pwrite(fd, buf, off) == n
        finally:
            os.close(fd)
        if off > len(cur):
            cur.extend(b"\0" * (off - len(cur)))
        cur[off:off + n] = buf
        self.model[path] = cur

    def op_truncate(self):
        path = self.some_file()
        if not path:
            return
        size = self.rng.choice([0, 1, 4095, len(self.model[path]) // 2,
                                len(self.model[path]) + 70000])
        self.ops.append("truncate %s %d" % (path, size))
        os.truncate(self.m.path(path), size)
        cur = self.model[path]
        if size <= len(cur):
            del cur[size:]
        else:
            cur.extend(b"\0" * (size - len(cur)))

    def op_rename(self):
        src = self.some_file()
        if not src:
            return
        dst = self.random_path()
        self.ops.append("rename %s %s" % (src, dst))
        if dst == src:
            return
        os.makedirs(os.path.dirname(self.m.path(dst)), exist_ok=True)
        os.rename(self.m.path(src), self.m.path(dst))
        self.model[dst] = self.model.pop(src)

    def op_unlink(self):
        path = self.some_file()
        if not path:
            return
        self.ops.append("unlink %s" % path)
        os.unlink(self.m.path(path))
        del self.model[path]

    def op_fsync(self):
        path = self.some_file() if self.rng.random() < 0.5 else ""
        self.ops.append("fsync %s" % (path or "/"))
        fsync(self.m.path(path) if path else self.m.mnt)

    def op_remount(self):
        self.ops.append("remount")
        assert self.m.stop() == 0, self.m.errors()
        self.mount()

    def op_kill(self):
        self.ops.append("kill -9 and remount")
        self.m.kill()
        self.mount()

    def op_check(self):
        path = self.some_file()
        if not path:
            return
        want = bytes(self.model[path])
        off = self.rng.randrange(0, len(want) + 1)
        n = self.rng.choice([1, 4096, 1 << 20])
        with open(self.m.path(path), "rb") as f:
            f.seek(off)
            got = f.read(n)
            size = os.fstat(f.fileno()).st_size
        if size != len(want):
            self.fail("%s: size %d, expected %d" % (path, size, len(want)))
        if got != want[off:off + n]:
            self.fail("%s: bytes at %d differ" % (path, off))

    OPS = [(op_write, 30), (op_truncate, 8), (op_rename, 8), (op_unlink, 5),
           (op_fsync, 6), (op_check, 30), (op_remount, 1), (op_kill, 1)]

    def run(self, seconds):
        funcs = [f for f, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        deadline = time.time() + seconds
        n = 0
        while time.time() < deadline:
            f = self.rng.choices(funcs, weights)[0]
            try:
                f(self)
            except OSError as e:
                self.fail("%s: %s" % (self.ops[-1] if self.ops else f, e))
            n += 1
        return n

    def check_all(self):
        got = sorted(self.walk())
        if got != sorted(self.model):
            self.fail("files %s, expected %s" % (got, sorted(self.model)))
        for path, want in self.model.items():
            with open(self.m.path(path), "rb") as f:
                if f.read() != want:
                    self.fail("%s differs" % path)

    def check_branch(self):
        t = tree(self.hub, self.repo)
        t.pop(".gitattributes", None)
        if sorted(t) != sorted(self.model):
            self.fail("branch files %s, expected %s" % (sorted(t),
                                                        sorted(self.model)))
        for path, want in self.model.items():
            e = t[path]
            ok = (e["lfs"]["oid"] == hashlib.sha256(want).hexdigest()
                  if e.get("lfs") else e["oid"] == git_blob_id(bytes(want)))
            if not ok or e["size"] != len(want):
                self.fail("%s: the branch holds other bytes" % path)


def test_random_operations_against_a_model(hub, repo, mount_factory,
                                           tmp_path):
    seed = int(os.environ.get("HUBFS_STRESS_SEED") or
               random.SystemRandom().randrange(1 << 31))
    seconds = float(os.environ.get("HUBFS_STRESS_SECONDS", "20"))
    s = Stress(hub, repo, mount_factory, str(tmp_path / "cache"), seed)
    n = s.run(seconds)
    assert n > 50
    s.check_all()
    fsync(s.m.mnt)
    s.check_branch()
    # A fresh mount with a fresh cache reads the same from the Hub.
    m2 = mount_factory(hub, repo, "ro", token=WRITE)
    s.m = m2
    s.check_all()
    assert "error" not in s.m.errors()


def test_fsync_of_a_deleted_path_fails_cleanly(hub, repo, mount_factory):
    """Not random, but found by the stress test's shape: a handle open on
    a file that is then unlinked still reads and fsyncs."""
    m = mount_factory(hub, repo, token=WRITE)
    fd = os.open(m.path("gone.txt"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"still here\n")
        os.unlink(m.path("gone.txt"))
        assert os.pread(fd, 100, 0) == b"still here\n"
        os.fsync(fd)
    finally:
        os.close(fd)
    assert wait_for(lambda: "gone.txt" not in tree(hub, repo), 10)
    assert not os.path.exists(m.path("gone.txt"))
    try:
        os.stat(m.path("gone.txt"))
    except OSError as e:
        assert e.errno == errno.ENOENT
