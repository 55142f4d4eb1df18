"""The block cache under a real mount: single-flight fetches, the hard size
limit, sharing between processes, and integrity against a damaged cache,
a Hub that serves the wrong content, or a disk that fails writes."""

import contextlib
import ctypes
import errno
import glob
import hashlib
import mmap
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import BLOCK, HUBFS, WRITE, real_bytes

SMALL = "model-00001-of-00001.safetensors"


@pytest.fixture
def chub(localhub_factory):
    """A server with a 512 KiB single-shard model and a 12 MiB one."""
    h = localhub_factory()
    h.seed("seed-model", "tester/small", "--no-history", "--shards", "1",
           "--shard-size", "512KiB")
    h.seed("seed-model", "tester/big", "--no-history", "--shards", "1",
           "--shard-size", "12MiB")
    h.start()
    return h


def cdn_bytes(h, seq):
    return sum(e["bytes"] for e in h.log_since(seq) if e["route"] == "cdn-get")


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def test_concurrent_readers_fetch_each_block_once(chub, mount_factory):
    want = real_bytes(chub, "tester/big", SMALL)
    m = mount_factory(chub, "tester/big")
    seq = chub.mark()
    got = [None] * 4

    def reader(i):
        got[i] = read_all(m.path(SMALL))
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got == [want] * 4
    assert cdn_bytes(chub, seq) == len(want)


def test_cache_size_is_a_hard_limit(chub, mount_factory, tmp_path):
    cache = str(tmp_path / "cache")
    m = mount_factory(chub, "tester/big", "cache_size=5M", cache_dir=cache)
    want = real_bytes(chub, "tester/big", SMALL)
    for _ in range(2):
        assert read_all(m.path(SMALL)) == want

    def stored():
        return sum(os.stat(p).st_blocks * 512
                   for p in glob.glob(os.path.join(cache, "data", "*", "*")))
    assert stored() <= 5 << 20
    # While one 12 MiB file is open, it cannot all be kept: reads still
    # return the right bytes.
    with open(m.path(SMALL), "rb") as f:
        for off in range(0, len(want), 3 << 20):
            f.seek(off)
            assert f.read(1 << 20) == want[off:off + (1 << 20)]
        assert stored() <= 5 << 20


def test_two_mounts_share_one_cache(chub, mount_factory, tmp_path):
    cache = str(tmp_path / "cache")
    want = real_bytes(chub, "tester/big", SMALL)
    a = mount_factory(chub, "tester/big", cache_dir=cache)
    b = mount_factory(chub, "tester/big", cache_dir=cache)
    got = {}
    ts = [threading.Thread(target=lambda k, m: got.__setitem__(
        k, read_all(m.path(SMALL))), args=(k, m)) for k, m in
        (("a", a), ("b", b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert got == {"a": want, "b": want}
    seq = chub.mark()
    c = mount_factory(chub, "tester/big", cache_dir=cache)
    assert read_all(c.path(SMALL)) == want
    assert read_all(a.path(SMALL)) == want
    assert cdn_bytes(chub, seq) == 0


def cached_big_file(chub, mount_factory, tmp_path):
    """Read tester/big's shard through a mount into a new cache; return
    the cache directory, the bytes and the shard's data file."""
    cache = str(tmp_path / "cache")
    want = real_bytes(chub, "tester/big", SMALL)
    m = mount_factory(chub, "tester/big", cache_dir=cache)
    assert read_all(m.path(SMALL)) == want
    m.stop()
    key = hashlib.sha256(want).hexdigest()
    (data,) = glob.glob(os.path.join(cache, "data", "*", key))
    return cache, want, data


def test_damaged_cache_blocks_are_fetched_again(chub, mount_factory, tmp_path):
    cache, want, data = cached_big_file(chub, mount_factory, tmp_path)
    with open(data, "r+b") as f:
        f.seek(5 << 20)
        f.write(b"\xff" * 100)          # a damaged block
        f.truncate(11 << 20)            # and a missing tail
    seq = chub.mark()
    m2 = mount_factory(chub, "tester/big", cache_dir=cache)
    assert os.stat(m2.path(SMALL)).st_blksize == BLOCK
    assert read_all(m2.path(SMALL)) == want
    # The damaged block and the missing tail, nothing else.
    assert cdn_bytes(chub, seq) == BLOCK + len(want) - (11 << 20)


def test_a_small_read_checks_only_its_pages(chub, mount_factory, tmp_path):
    """After a remount a 4 KiB read checks the 16 KiB page that holds it,
    not its whole block: damage elsewhere in the block costs it nothing,
    and the damaged page is still never served."""
    cache, want, data = cached_big_file(chub, mount_factory, tmp_path)
    bad = (5 << 20) + 100 * 1024        # page 6 of block 20
    with open(data, "r+b") as f:
        f.seek(bad)
        f.write(b"\xff" * 100)
    m2 = mount_factory(chub, "tester/big", cache_dir=cache)
    fd = os.open(m2.path(SMALL), os.O_RDONLY)
    try:
        # No kernel readahead: the daemon sees only the bytes asked for.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        seq = chub.mark()
        good = (5 << 20) + 8192
        assert os.pread(fd, 4096, good) == want[good:good + 4096]
        assert cdn_bytes(chub, seq) == 0
        assert os.pread(fd, 100, bad) == want[bad:bad + 100]
        assert cdn_bytes(chub, seq) == BLOCK
    finally:
        os.close(fd)


def corrupt_on_server(h, data):
    """Flip one byte of the server's stored copy of @data (same size)."""
    key = hashlib.sha256(data).hexdigest()
    path = os.path.join(h.data, "lfs", "objects", key[:2], key[2:4], key)
    with open(path, "r+b") as f:
        f.seek(len(data) // 2)
        b = f.read(1)
        f.seek(len(data) // 2)
        f.write(bytes([b[0] ^ 1]))


def test_wrong_content_of_a_small_file_is_never_served(chub, mount_factory):
    want = real_bytes(chub, "tester/small", SMALL)
    corrupt_on_server(chub, want)
    m = mount_factory(chub, "tester/small")
    for _ in range(2):
        with pytest.raises(OSError) as e:
            read_all(m.path(SMALL))
        assert e.value.errno == errno.EIO
    m.stop()
    assert "does not match its sha256" in m.errors()


@pytest.mark.parametrize("token", [None, WRITE], ids=["read", "writable"])
def test_wrong_content_of_a_large_file_ends_in_eio(chub, mount_factory,
                                                    token):
    want = real_bytes(chub, "tester/big", SMALL)
    corrupt_on_server(chub, want)
    m = mount_factory(chub, "tester/big", token=token)
    # The read of the end waits for the hash: a reader that went through
    # the whole file fails, however late the hash ends.
    for _ in range(3):
        with pytest.raises(OSError) as e:
            read_all(m.path(SMALL))
        assert e.value.errno == errno.EIO
    m.stop()
    assert "does not match its sha256" in m.errors()


def test_wrong_content_of_a_regular_file(chub, mount_factory):
    r = chub.get("/api/models/tester/small/tree/main")
    oid = [e["oid"] for e in r.json() if e["path"] == "config.json"][0]
    m = mount_factory(chub, "tester/small")
    (blob,) = glob.glob(os.path.join(chub.data, "blobcache", "*", oid)) or \
        [None]
    if blob is None:                    # not served yet: make it so
        chub.get("/tester/small/resolve/main/config.json")
        (blob,) = glob.glob(os.path.join(chub.data, "blobcache", "*", oid))
    with open(blob, "r+b") as f:
        f.write(b"X")
    with pytest.raises(OSError) as e:
        read_all(m.path("config.json"))
    assert e.value.errno == errno.EIO
    m.stop()
    assert "does not match its blob id" in m.errors()


def sanitized():
    out = subprocess.run(["ldd", HUBFS], stdout=subprocess.PIPE).stdout
    return b"libasan" in out or b"libtsan" in out


def test_memory_stays_bounded(localhub_factory, mount_factory):
    if sanitized():
        pytest.skip("sanitizer builds use much more memory by design")
    h = localhub_factory()
    h.seed("seed-model", "tester/m", "--no-history", "--shards", "2",
           "--shard-size", "48MiB")
    h.start()
    m = mount_factory(h, "tester/m")
    names = ["model-00001-of-00002.safetensors",
             "model-00002-of-00002.safetensors"]
    got = {}

    def reader(i):
        with open(m.path(names[i % 2]), "rb") as f:
            got[i] = hashlib.sha256(f.read()).hexdigest()
    ts = [threading.Thread(target=reader, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert len(got) == 6 and len(set(got.values())) == 2
    with open("/proc/%d/status" % m.proc.pid) as f:
        hwm = [int(x.split()[1]) for x in f if x.startswith("VmHWM:")][0]
    # 96 MiB of content read by six readers: the daemon's peak resident
    # memory must not grow with it (nothing is buffered in memory).
    assert hwm < 64 * 1024, "peak RSS %d KiB" % hwm


def resident(path):
    """Bytes of @path in the kernel's page cache."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output",
                          "RES", path], stdout=subprocess.PIPE, check=True,
                         text=True).stdout
    return int(out.split()[0])


def resident_below(path, end):
    """Bytes of @path before @end in the kernel's page cache (mincore on a
    private mapping, which reports the file's pages and touches none)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                             ctypes.c_char_p]
    page = os.sysconf("SC_PAGE_SIZE")
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), end, access=mmap.ACCESS_COPY)
        try:
            buf = (ctypes.c_char * end).from_buffer(mm)
            vec = ctypes.create_string_buffer((end + page - 1) // page)
            try:
                if libc.mincore(ctypes.addressof(buf), end, vec) != 0:
                    raise OSError(ctypes.get_errno(), "mincore")
            finally:
                del buf
        finally:
            mm.close()
    return sum(b & 1 for b in vec.raw) * page


def skip_on_tmpfs(path):
    fstype = subprocess.run(["stat", "-f", "-c", "%T", str(path)],
                            stdout=subprocess.PIPE, text=True).stdout
    if fstype.strip() == "tmpfs":
        pytest.skip("a tmpfs file's pages are its storage")


def wait_resident_below(data, limit, measure=resident):
    """The daemon gives back pages after its reply, and the kernel tells
    it of a close a moment after the close."""
    deadline = time.monotonic() + 10
    while measure(data) >= limit and time.monotonic() < deadline:
        time.sleep(0.05)
    return measure(data)


def seq_hub(localhub_factory, tmp_path):
    """A local Hub serving a 48 MiB file: the Hub, the file's bytes, and
    a cache directory for it."""
    skip_on_tmpfs(tmp_path)
    h = localhub_factory()
    h.seed("seed-model", "tester/seq", "--no-history", "--shards", "1",
           "--shard-size", "48MiB")
    h.start()
    return h, real_bytes(h, "tester/seq", SMALL), str(tmp_path / "cache")


def seq_mount(localhub_factory, mount_factory, tmp_path):
    """A fresh mount of a 48 MiB file: the local Hub, the mount, the
    file's bytes, and the pattern of its cache file's path."""
    h, real, cache = seq_hub(localhub_factory, tmp_path)
    m = mount_factory(h, "tester/seq", cache_dir=cache)
    return h, m, real, os.path.join(cache, "data", "*",
                                    hashlib.sha256(real).hexdigest())


def test_a_sequential_read_gives_back_the_cache_files_pages(
        localhub_factory, mount_factory, tmp_path):
    """Read in order, a large file's bytes are kept in the kernel's cache
    of the file itself; the pages of the cache file under them are given
    back as the reader passes and the rest once the hash has ended, both
    just fetched (written, then clean) and after a remount (read from
    disk)."""
    skip_on_tmpfs(tmp_path)
    h = localhub_factory()
    h.seed("seed-model", "tester/seq", "--no-history", "--shards", "1",
           "--shard-size", "48MiB")
    h.start()
    want = hashlib.sha256(real_bytes(h, "tester/seq", SMALL)).digest()
    cache = str(tmp_path / "cache")
    data = None
    for when in ("fetched", "after a remount"):
        m = mount_factory(h, "tester/seq", cache_dir=cache)
        if data:
            fd = os.open(data, os.O_RDONLY)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
            assert resident(data) == 0
        got = hashlib.sha256()
        with open(m.path(SMALL), "rb") as f:
            while chunk := f.read(1 << 20):
                got.update(chunk)
            (data,) = glob.glob(os.path.join(cache, "data", "*",
                                             want.hex()))
            # While open, once the last replies are followed up (a
            # moment after them): all of it, as the hash has ended.
            assert wait_resident_below(data, 2 << 20) < (2 << 20), when
        assert got.digest() == want
        # Closed: all of it.  A range that cuts a folio of readahead
        # would keep it whole.
        assert wait_resident_below(data, 2 << 20) < (2 << 20), when
        m.stop()


def test_a_reader_that_stops_short_gives_back_what_it_read(
        localhub_factory, mount_factory, tmp_path):
    """A reader that stops short of the end leaves the rest to readahead;
    once the hash has ended (in a read or in a fetch worker), the pages
    of what was read are given back, not only when the file is closed."""
    _, m, real, pattern = seq_mount(localhub_factory, mount_factory, tmp_path)
    part = 24 << 20
    with open(m.path(SMALL), "rb") as f:
        got = f.read(part)
        assert got == real[:part]
        (data,) = glob.glob(pattern)
        # The hash ends once readahead has fetched the rest; then all
        # that was read is given back.
        assert wait_resident_below(
            data, 2 << 20,
            lambda p: resident_below(p, part)) < (2 << 20)


def test_the_fetch_that_ends_the_hash_gives_back_what_was_read(
        localhub_factory, mount_factory, tmp_path):
    """The same reader, with the fetches of the file's tail held up by
    the Hub: its last read is answered long before the hash can end, so
    only the worker whose fetch ends it is left to give back the pages
    that read kept (the last chunks, kept for the disk's sake)."""
    h, m, real, pattern = seq_mount(localhub_factory, mount_factory, tmp_path)
    part, tail, stall = 24 << 20, 40 << 20, 4
    h.admin("POST", "/faults", {"route": "cdn-get", "action": "stall",
                                "seconds": stall, "min_offset": tail})
    with open(m.path(SMALL), "rb") as f:
        began = time.monotonic()
        got = f.read(part)
        assert got == real[:part]
        (data,) = glob.glob(pattern)
        kept = resident_below(data, part)
        assert time.monotonic() - began < stall, "the read waited for the tail"
        # Nothing has ended the hash yet: some of what was read is kept.
        assert kept >= (2 << 20), kept
        assert wait_resident_below(
            data, 2 << 20,
            lambda p: resident_below(p, part)) < (2 << 20)
        assert f.read() == real[part:]
    stalled = [r for r in h.admin("GET", "/faults") if r["fired"]]
    assert stalled, "no fetch of the tail was held up"


@contextlib.contextmanager
def failing_disk(where, room):
    """An ext4 file system mounted at @where whose writes to disk fail
    (ENOSPC from below, EIO to ext4) once @room bytes are taken: a loop
    device over a sparse file on a tmpfs of that size.  ext4 itself
    believes it has 512 MiB, so writes succeed into the page cache and
    fail at writeback."""
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices)")
    for tool in ("losetup", "mkfs.ext4", "mount", "umount"):
        if not shutil.which(tool):
            pytest.skip("%s is not installed" % tool)
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("no loop devices here")
    back = where + ".back"
    os.makedirs(back)
    os.makedirs(where, exist_ok=True)
    undo = []   # lazily, so that a daemon still inside cannot keep them

    def run_or_skip(argv):
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip("%s: %s" % (" ".join(argv[:2]), r.stderr.strip()))
        return r.stdout.strip()

    try:
        run_or_skip(["mount", "-t", "tmpfs", "-o", "size=%d" % room, "tmpfs",
                     back])
        undo.append(["umount", "-l", back])
        img = os.path.join(back, "disk.img")
        with open(img, "wb") as f:
            f.truncate(512 << 20)
        # Few inodes, no journal, nothing left for later: all that mkfs
        # writes is a few hundred KiB, and nothing writes in the background.
        run_or_skip(["mkfs.ext4", "-q", "-F", "-N", "64", "-m", "0",
                     "-O", "^has_journal,^resize_inode",
                     "-E", "nodiscard,lazy_itable_init=0", img])
        loop = run_or_skip(["losetup", "-f", "--show", img])
        undo.append(["losetup", "-d", loop])
        run_or_skip(["mount", "-o", "errors=continue,noinit_itable", loop,
                     where])
        undo.append(["umount", "-l", where])
        yield
    finally:
        failed = [" ".join(argv) for argv in reversed(undo)
                  if subprocess.run(argv, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL).returncode]
        # Said, unless the test's own failure is on its way out.
        if failed and sys.exc_info()[0] is None:
            raise RuntimeError("cleanup failed: %s" % "; ".join(failed))


def test_a_failed_write_of_the_cache_never_serves_the_disks_bytes(
        localhub_factory, mount_factory, tmp_path):
    """The cache's data files on a disk that fails writes: a page whose
    write failed is clean, the kernel may drop it, and the disk's stale
    bytes would then be read in its place, unchecked (blocks this process
    stored are trusted).  Every read must still get the Hub's bytes."""
    h, real, cache = seq_hub(localhub_factory, tmp_path)
    smalls = {n: real_bytes(h, "tester/seq", n)
              for n in ("config.json", "tokenizer.json")}
    with failing_disk(os.path.join(cache, "data"), 24 << 20):
        m = mount_factory(h, "tester/seq", cache_dir=cache)
        try:
            path = m.path(SMALL)
            assert read_all(path) == real
            # Stored once the disk is full: fetched whole, checked, and
            # then served from the cache without a check.
            for n, want in smalls.items():
                assert read_all(m.path(n)) == want
            # What the kernel would do in time: write back what is still
            # dirty (sync(2) leaves the failures to be told to the files'
            # own readers), then, under memory pressure, drop the clean
            # pages, those of the cache files whose writes failed among
            # them.
            os.sync()
            keys = [hashlib.sha256(real).hexdigest()] + [
                hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()
                for b in smalls.values()]
            datas = [glob.glob(os.path.join(cache, "data", "*", k))
                     for k in keys]
            assert all(len(d) == 1 for d in datas), datas
            datas = [d[0] for d in datas]
            for p in datas + [path] + [m.path(n) for n in smalls]:
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
            assert resident_below(datas[0], len(real)) < len(real) // 2
            for n, want in smalls.items():
                assert read_all(m.path(n)) == want, n
            # From the end back: the blocks stored last are read before
            # the whole-file hash, which starts at the first, can find
            # them wrong.
            bad = []
            fd = os.open(path, os.O_RDONLY)
            try:
                for i in reversed(range(0, len(real), 1 << 20)):
                    if os.pread(fd, 1 << 20, i) != real[i:i + (1 << 20)]:
                        bad.append(i >> 20)
            finally:
                os.close(fd)
            assert not bad, "wrong bytes in MiB %s" % sorted(bad)
            assert "a write of its data file failed" in m.errors()
        finally:
            m.stop()


def test_loaders_sharing_out_tensors_give_back_the_cache_files_pages(
        localhub_factory, mount_factory, tmp_path):
    """Four loaders each read every fourth 512 KiB tensor of a file: no
    one handle reads in order, but between them they read all of it, and
    the cache file's pages under what they read are given back as they
    go, the rest once the hash has ended."""
    _, m, real, pattern = seq_mount(localhub_factory, mount_factory, tmp_path)
    path = m.path(SMALL)
    size = len(real)
    tensor, piece, n = 512 << 10, 128 << 10, 4
    got, errors = {}, []
    done, closing = threading.Barrier(n + 1), threading.Barrier(n + 1)

    def loader(r):
        fd = os.open(path, os.O_RDONLY)
        try:
            for off in range(r * tensor, size, n * tensor):
                for p in range(off, min(off + tensor, size), piece):
                    got[p] = os.pread(fd, piece, p)
            done.wait(timeout=120)
            closing.wait(timeout=120)
        except Exception as e:          # reported below, not lost
            errors.append(e)
            done.abort()
            closing.abort()
        finally:
            os.close(fd)

    threads = [threading.Thread(target=loader, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    open_resident, closed = None, False
    try:
        done.wait(timeout=120)
        (data,) = glob.glob(pattern)
        # All read, all handles open: all of it, as for one reader in
        # order (above).
        open_resident = wait_resident_below(data, 2 << 20)
        closing.wait(timeout=120)
        closed = True
    except threading.BrokenBarrierError:
        pass                            # a loader failed: see errors
    finally:
        if not closed:
            closing.abort()             # no loader waits for this one
        for t in threads:
            t.join()
    assert not errors, errors
    assert open_resident is not None
    assert b"".join(got[o] for o in sorted(got)) == real
    assert open_resident < (2 << 20), open_resident
    assert wait_resident_below(data, 2 << 20) < (2 << 20)


@pytest.mark.parametrize("token", [None, WRITE], ids=["read", "writable"])
def test_exit_with_files_still_open(chub, mount_factory, token):
    """A daemon told to stop while files are open gets no release for them:
    it frees those handles itself, after its fetch workers stopped and
    while the objects they hold still exist (a sanitizer build reports any
    use after free at exit; the fixture fails on such a report)."""
    want = real_bytes(chub, "tester/big", SMALL)
    m = mount_factory(chub, "tester/big", token=token)
    f = open(m.path(SMALL), "rb")
    try:
        f.seek(5 << 20)
        assert f.read(4096) == want[5 << 20:(5 << 20) + 4096]
        m.proc.terminate()
        assert m.proc.wait(60) == 0
    finally:
        try:
            f.close()
        except OSError:
            pass                        # the mount is gone
