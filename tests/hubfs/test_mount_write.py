"""The write path, on real mounts against the local Hub: what writes,
renames, unlinks and fsync turn into, checked with git + git-lfs clones of
the branch as the oracle."""

import errno
import mmap
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import READ, WRITE
from writeutil import (SHARD1, clone, commits, fsync, git, head, js_commit,
                       js_show, read, repo, sha256, staged_inodes, tree,
                       wait_for, write)

assert git and repo	# fixtures, used by name


def test_write_and_fsync_make_a_commit(hub, repo, mount_factory, git,
                                       tmp_path, js_client_dir):
    m = mount_factory(hub, repo, token=WRITE)
    before = head(hub, repo)
    big = os.urandom(3 * 1024 * 1024 + 17)
    os.makedirs(m.path("checkpoints", "step-1"))
    write(m.path("checkpoints", "step-1", "weights.bin"), big)
    write(m.path("checkpoints", "step-1", "meta.json"), b'{"step": 1}\n')
    assert read(m.path("checkpoints", "step-1", "weights.bin")) == big
    fd = os.open(m.path("checkpoints", "step-1", "meta.json"), os.O_RDWR)
    os.fsync(fd)
    os.close(fd)
    # fsync returned: the commit is on the branch, with parent the
    # commit the mount was showing.
    now = head(hub, repo)
    assert now != before
    assert os.getxattr(m.mnt, "user.hubfs.commit").decode() == now
    msg = commits(hub, repo)[0]["message"]
    assert "Hubfs-Commit:" in msg
    d = clone(git, hub, repo, str(tmp_path / "c"))
    assert read(os.path.join(d, "checkpoints/step-1/weights.bin")) == big
    assert read(os.path.join(d, "checkpoints/step-1/meta.json")) == \
        b'{"step": 1}\n'
    assert git.out("rev-parse", "HEAD^", cwd=d).decode().strip() == before
    # LFS for the binary, an inline blob for the JSON.
    ptr = git.out("show", "HEAD:checkpoints/step-1/weights.bin", cwd=d)
    assert ptr.startswith(b"version https://git-lfs")
    assert git.out("show", "HEAD:checkpoints/step-1/meta.json", cwd=d) == \
        b'{"step": 1}\n'
    # The official client sees the same commit and bytes.
    shown = js_show(js_client_dir, hub, repo)
    assert [c["id"] for c in shown["commits"][:2]] == [now, before]
    assert shown["files"]["checkpoints/step-1/weights.bin"] == {
        "size": len(big), "sha256": sha256(big), "lfs": True}
    assert shown["files"]["checkpoints/step-1/meta.json"] == {
        "size": 12, "sha256": sha256(b'{"step": 1}\n'), "lfs": False}


def test_read_your_writes_without_a_download(hub, repo, mount_factory):
    m = mount_factory(hub, repo, token=WRITE)
    data = os.urandom(2 * 1024 * 1024 + 5)
    write(m.path("fresh.bin"), data)
    staged = staged_inodes(m.cache_dir)
    assert len(staged) == 1
    fsync(m.path("fresh.bin"))
    seq = hub.mark()
    assert read(m.path("fresh.bin")) == data
    key = os.getxattr(m.path("fresh.bin"), "user.hubfs.sha256").decode()
    assert key == sha256(data)
    gets = [e for e in hub.log_since(seq) if e["route"] in ("cdn-get",
                                                             "resolve")]
    assert gets == []
    # The staged file itself became the cache's copy: linked, not copied.
    cached = os.path.join(m.cache_dir, "data", key[:2], key)
    assert os.stat(cached).st_ino in staged
    assert staged_inodes(m.cache_dir) == set()
    assert read(cached) == data


def resident(path):
    """Bytes of @path in the kernel's page cache (fincore opens it
    read-only, which keeps the cached pages)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings",
                          "--output", "RES", path], check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip())


def kernel_drops_pages_on_direct_writes():
    """FUSE protocol 7.39 (Linux 6.6) and later."""
    major, minor = (int(x) for x in
                    os.uname().release.split("-")[0].split(".")[:2])
    return (major, minor) >= (6, 6)


def test_written_bytes_skip_the_page_cache(hub, repo, mount_factory):
    """A handle opened only for writing bypasses the kernel's page cache,
    so a written file is not held twice in memory; a reader's cached pages
    and its mapping of the written range still show the new bytes."""
    m = mount_factory(hub, repo, token=WRITE)
    mib = 1024 * 1024
    path = m.path("direct.bin")
    old = os.urandom(mib)
    write(path, old)
    if kernel_drops_pages_on_direct_writes():
        assert resident(path) == 0
    r = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(r, mib, 0) == old
        assert resident(path) == mib
        mm = mmap.mmap(r, mib, prot=mmap.PROT_READ)
        assert mm[:] == old
        new = os.urandom(65536)
        w = os.open(path, os.O_WRONLY)
        try:
            assert os.pwrite(w, new, 4096) == len(new)
        finally:
            os.close(w)
        want = old[:4096] + new + old[4096 + len(new):]
        assert os.pread(r, mib, 0) == want
        assert mm[:] == want
        mm.close()
        # A handle that may also read keeps going through the cache.
        rw = os.open(path, os.O_RDWR)
        try:
            assert os.pwrite(rw, b"Z" * 8192, mib - 8192) == 8192
            assert os.pread(r, 8192, mib - 8192) == b"Z" * 8192
        finally:
            os.close(rw)
    finally:
        os.close(r)
    fsync(path)
    assert tree(hub, repo)["direct.bin"]["lfs"]["oid"] == sha256(
        want[:mib - 8192] + b"Z" * 8192)


def test_hashes_kept_while_writing_match_the_bytes(hub, repo, mount_factory):
    """A file written front to back is hashed as it is written; every way
    of leaving that order must still commit the right sha256 (the local
    Hub refuses an upload whose bytes do not match it)."""
    m = mount_factory(hub, repo, token=WRITE)
    mib = 1024 * 1024
    want = {}

    def pwrites(name, parts, cuts=()):
        fd = os.open(m.path(name), os.O_RDWR | os.O_CREAT)
        try:
            for off, data in parts:
                os.pwrite(fd, data, off)
            for size in cuts:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def expect(name):
        want[name] = read(m.path(name))

    a = os.urandom(3 * mib + 17)
    pwrites("seq.bin", [(o, a[o:o + 65536]) for o in range(0, len(a), 65536)])
    expect("seq.bin")
    b = os.urandom(2 * mib)
    pwrites("over.bin", [(0, b[:mib]), (mib, b[mib:]), (100, b"X" * 5000)])
    expect("over.bin")
    c = os.urandom(2 * mib)
    pwrites("cut.bin", [(0, c)], cuts=[mib + 3])
    pwrites("cut.bin", [(mib + 3, c[:4096])])
    expect("cut.bin")
    pwrites("cutgrow.bin", [(0, c)], cuts=[mib, 2 * mib])
    expect("cutgrow.bin")
    d = os.urandom(2 * mib)
    pwrites("gap.bin", [(mib, d[mib:]), (0, d[:mib])])
    expect("gap.bin")
    e = os.urandom(mib)
    pwrites("grow.bin", [(0, e)], cuts=[2 * mib])
    expect("grow.bin")
    # Cut to nothing (as open(O_TRUNC) does) and written anew.
    with open(m.path(SHARD1), "wb") as f:
        f.write(os.urandom(mib + 1))
    expect(SHARD1)
    # A write is hashed after it was answered, so the hashes of writes
    # that came in order may run at once, and must still go in in order:
    # large writes to a write-only descriptor, as dd and cp make them,
    # then writers on several threads, then writes below the end hashed
    # so far mixed in.
    h = os.urandom(32 * mib)
    fd = os.open(m.path("large.bin"), os.O_WRONLY | os.O_CREAT)
    try:
        for o in range(0, len(h), mib):
            assert os.pwrite(fd, h[o:o + mib], o) == mib
    finally:
        os.close(fd)
    expect("large.bin")
    assert want["large.bin"] == h
    chunk = 16 * 1024
    f = os.urandom(1024 * chunk)
    g = bytearray(os.urandom(256 * chunk))

    def threads(name, jobs):
        fds = [os.open(m.path(name), os.O_WRONLY | os.O_CREAT)
               for _ in jobs]
        try:
            with ThreadPoolExecutor(len(jobs)) as ex:
                for r in ex.map(lambda a: [os.pwrite(a[0], d, o)
                                           for o, d in a[1]],
                                zip(fds, jobs)):
                    assert all(n > 0 for n in r)
        finally:
            for fd in fds:
                os.close(fd)

    threads("threads.bin", [[(o, f[o:o + chunk])
                             for o in range(k * chunk, len(f), 8 * chunk)]
                            for k in range(8)])
    expect("threads.bin")
    again = [(o + 4096, b"A" * 4096) for o in range(0, len(g), 4 * chunk)]
    for o, d in again:
        g[o:o + len(d)] = d
    threads("rewrites.bin", [[(o, g[o:o + chunk])
                              for o in range(k * chunk, len(g), 2 * chunk)]
                             for k in range(2)] + [again])
    expect("rewrites.bin")
    assert want["threads.bin"] == f
    assert want["rewrites.bin"] == bytes(g)
    assert want["over.bin"][100:5100] == b"X" * 5000
    assert want["cut.bin"] == c[:mib + 3] + c[:4096]
    assert want["grow.bin"] == e + bytes(mib)
    assert want["cutgrow.bin"] == c[:mib] + bytes(mib)
    fsync(m.path("seq.bin"))
    # A second commit of a file that goes on growing.
    with open(m.path("seq.bin"), "ab") as f:
        f.write(b"tail" * 1000)
    expect("seq.bin")
    fsync(m.path("seq.bin"))
    t = tree(hub, repo)
    for name, data in want.items():
        assert t[name]["size"] == len(data), name
        assert t[name]["lfs"]["oid"] == sha256(data), name


def test_close_commits_after_a_quiet_period(hub, repo, mount_factory, git,
                                           tmp_path):
    m = mount_factory(hub, repo, token=WRITE)
    n0 = len(commits(hub, repo))
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / ("f%d.json" % i)).write_bytes(b"%d\n" % i)
    subprocess.run(["cp", "-r", str(src), m.path("copied")], check=True)
    assert wait_for(lambda: len(commits(hub, repo)) > n0, 30)
    time.sleep(3)
    # One cp -r, one commit.
    assert len(commits(hub, repo)) == n0 + 1
    d = clone(git, hub, repo, str(tmp_path / "c"))
    for i in range(8):
        assert read(os.path.join(d, "copied", "f%d.json" % i)) == b"%d\n" % i


def test_rename_reuses_lfs_content(hub, repo, mount_factory, git, tmp_path):
    m = mount_factory(hub, repo, token=WRITE)
    os.mkdir(m.path("notes"))
    write(m.path("notes", "a.bin"), os.urandom(100000))
    write(m.path("notes", "b.txt"), b"b\n")
    fsync(m.mnt)
    orig = read(m.path(SHARD1))
    seq = hub.mark()
    os.rename(m.path(SHARD1), m.path("renamed.safetensors"))
    os.mkdir(m.path("sub"))
    os.rename(m.path("notes"), m.path("sub", "notes2"))
    fsync(m.mnt)
    log = hub.log_since(seq)
    assert not [e for e in log if e["route"] in ("cdn-put", "cdn-part")]
    assert read(m.path("renamed.safetensors")) == orig
    assert not os.path.exists(m.path(SHARD1))
    d = clone(git, hub, repo, str(tmp_path / "c"))
    assert read(os.path.join(d, "renamed.safetensors")) == orig
    assert not os.path.exists(os.path.join(d, SHARD1))
    assert os.listdir(os.path.join(d, "sub", "notes2"))
    assert not os.path.exists(os.path.join(d, "notes"))
    # One commit holds the whole rename.
    out = git.out("show", "--name-status", "--format=", "HEAD", cwd=d)
    assert SHARD1.encode() in out and b"renamed.safetensors" in out


def test_overwrite_in_place_truncate_unlink(hub, repo, mount_factory, git,
                                            tmp_path):
    m = mount_factory(hub, repo, token=WRITE)
    orig = bytearray(read(m.path(SHARD1)))
    with open(m.path(SHARD1), "r+b") as f:
        f.seek(1024 * 1024 - 3)
        f.write(b"hubfs!")
    orig[1024 * 1024 - 3:1024 * 1024 + 3] = b"hubfs!"
    assert read(m.path(SHARD1)) == bytes(orig)
    with open(m.path("config.json"), "r+b") as f:
        f.truncate(10)
    cfg = read(m.path("config.json"))
    assert len(cfg) == 10
    os.unlink(m.path("README.md"))
    with open(m.path("tokenizer.json"), "ab") as f:
        f.write(b"\n")
    tok = read(m.path("tokenizer.json"))
    fsync(m.mnt)
    d = clone(git, hub, repo, str(tmp_path / "c"))
    assert read(os.path.join(d, SHARD1)) == bytes(orig)
    assert read(os.path.join(d, "config.json")) == cfg
    assert read(os.path.join(d, "tokenizer.json")) == tok
    assert not os.path.exists(os.path.join(d, "README.md"))


def test_unmount_commits_and_a_remount_reads_back(hub, repo, mount_factory,
                                                   tmp_path):
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, repo, token=WRITE, cache_dir=cache)
    data = os.urandom(1500000)
    write(m.path("late.bin"), data)
    assert m.stop() == 0
    tree = hub.get("/api/models/%s/tree/main" % repo).json()
    assert "late.bin" in [e["path"] for e in tree]
    m2 = mount_factory(hub, repo, token=WRITE, cache_dir=cache)
    assert read(m2.path("late.bin")) == data
    m3 = mount_factory(hub, repo, token=READ)
    assert read(m3.path("late.bin")) == data


def test_kill_before_commit_is_finished_at_remount(hub, repo, mount_factory,
                                                   tmp_path):
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE,
                      cache_dir=cache)
    data = os.urandom(2 * 1024 * 1024)
    n0 = len(commits(hub, repo))
    write(m.path("a.bin"), data)
    write(m.path("b.txt"), b"b\n")
    m.kill()
    assert len(commits(hub, repo)) == n0
    m2 = mount_factory(hub, repo, token=WRITE, cache_dir=cache)
    assert read(m2.path("a.bin")) == data
    fsync(m2.mnt)
    assert len(commits(hub, repo)) == n0 + 1
    tree = {e["path"] for e in hub.get("/api/models/%s/tree/main" %
                                       repo).json()}
    assert {"a.bin", "b.txt"} <= tree


def test_read_only_cases(hub, repo, mount_factory):
    for source, opts, token, want in (
            (repo + "@v-none", (), WRITE, None),
            (repo, ("ro",), WRITE, errno.EROFS),
            (repo, (), READ, errno.EACCES),
            (repo, (), None, errno.EACCES)):
        if want is None:
            continue
        m = mount_factory(hub, source, *opts, token=token)
        for fn in (lambda: open(m.path("new.txt"), "w"),
                   lambda: open(m.path("config.json"), "r+"),
                   lambda: os.mkdir(m.path("d")),
                   lambda: os.unlink(m.path("config.json"))):
            with pytest.raises(OSError) as e:
                fn()
            assert e.value.errno == want, (opts, token)
        m.stop()
    m = mount_factory(hub, repo, token=WRITE)
    sha = os.getxattr(m.mnt, "user.hubfs.commit").decode()
    with pytest.raises(OSError) as e:
        open(m.path(".revisions", sha, "x.txt"), "w")
    assert e.value.errno == errno.EROFS


def test_refused_names_and_operations(hub, repo, mount_factory):
    m = mount_factory(hub, repo, token=WRITE)
    os.mkdir(m.path("config.json.d"))
    for fn, want in (
            (lambda: os.mkdir(m.path(".git")), errno.EINVAL),
            (lambda: open(m.path("config.json.d", ".git"), "w"), errno.EINVAL),
            # .revisions always exists (hidden), so nothing can take it.
            (lambda: os.mkdir(m.path(".revisions")), errno.EEXIST),
            (lambda: os.rename(m.path("config.json"), m.path(".revisions")),
             errno.EISDIR),
            (lambda: os.symlink("config.json", m.path("link")), errno.EPERM),
            (lambda: os.link(m.path("config.json"), m.path("hard")),
             errno.EPERM),
            (lambda: os.chmod(m.path("config.json"), 0o755), errno.EPERM)):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == want
    os.chmod(m.path("config.json"), 0o644)       # no change: accepted
    os.utime(m.path("config.json"), (0, 0))      # accepted, not kept


def pending(m):
    return os.getxattr(m.mnt, "user.hubfs.pending").decode().splitlines()


def test_conflicts_and_their_recovery(hub, repo, mount_factory, tmp_path,
                                      js_client_dir):
    """Another writer (the official JS client) commits between the mount's
    view and its fsync: on other paths the commit is rebased; on the same
    path fsync fails with ESTALE, nothing is lost, and the owner resolves
    it either way through user.hubfs.resolve."""
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    base = head(hub, repo)

    def upstream(title, **files):
        return js_commit(js_client_dir, hub, repo, title, tmp_path,
                         {k.replace("_", "."): v for k, v in files.items()})
    # Another path changed upstream: the commit is rebased.
    write(m.path("mine.txt"), b"mine\n")
    upstream("upstream theirs", theirs_txt=b"theirs\n")
    fsync(m.mnt)
    log = commits(hub, repo)
    assert [c["title"] for c in log[:2]] == ["Upload mine.txt",
                                             "upstream theirs"]
    assert read(m.path("theirs.txt")) == b"theirs\n"
    assert pending(m) == []
    # The same path changed upstream: fsync fails, nothing is lost.
    write(m.path("both.txt"), b"local\n")
    write(m.path("other.txt"), b"other\n")
    theirs = upstream("upstream both", both_txt=b"upstream\n")
    with pytest.raises(OSError) as e:
        fsync(m.path("both.txt"))
    assert e.value.errno == errno.ESTALE
    assert read(m.path("both.txt")) == b"local\n"
    assert head(hub, repo) == theirs
    assert base != theirs
    assert "both.txt was changed upstream" in m.errors()
    assert pending(m) == ["conflict both.txt", "modified other.txt"]
    # What upstream holds is there to compare with.
    assert read(m.path(".revisions", theirs, "both.txt")) == b"upstream\n"
    # Resolving something that is not in conflict is refused.
    with pytest.raises(OSError) as e:
        os.setxattr(m.path("other.txt"), "user.hubfs.resolve", b"ours")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        os.setxattr(m.path("both.txt"), "user.hubfs.resolve", b"mine")
    assert e.value.errno == errno.EINVAL
    # "ours": the local content goes over the upstream change.
    os.setxattr(m.path("both.txt"), "user.hubfs.resolve", b"ours")
    fsync(m.mnt)
    assert pending(m) == []
    log = commits(hub, repo)
    assert log[0]["title"] == "Update 2 files" or \
        log[0]["title"].startswith("Upload")
    assert log[1]["id"] == theirs
    shown = js_show(js_client_dir, hub, repo)
    assert shown["files"]["both.txt"]["sha256"] == sha256(b"local\n")
    assert shown["files"]["other.txt"]["sha256"] == sha256(b"other\n")
    # "theirs": the local change is dropped, the upstream one shown.
    write(m.path("both.txt"), b"local again\n")
    theirs = upstream("upstream both again", both_txt=b"upstream 2\n")
    with pytest.raises(OSError) as e:
        fsync(m.mnt)
    assert e.value.errno == errno.ESTALE
    n = len(commits(hub, repo))
    os.setxattr(m.mnt, "user.hubfs.resolve", b"theirs")
    assert pending(m) == []
    assert wait_for(lambda: read(m.path("both.txt")) == b"upstream 2\n", 10)
    assert os.getxattr(m.mnt, "user.hubfs.commit").decode() == theirs
    fsync(m.mnt)
    assert len(commits(hub, repo)) == n


def test_sync_of_the_mount_commits_everything(hub, repo, mount_factory):
    """`sync DIR` (coreutils: fsync of the directory) is the way to wait
    for every pending change of a mount; plain `sync` (syncfs of every
    file system) does not reach FUSE file systems."""
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    n0 = len(commits(hub, repo))
    os.makedirs(m.path("a", "b"))
    write(m.path("a", "b", "one.txt"), b"1\n")
    write(m.path("two.bin"), os.urandom(70000))
    subprocess.run(["sync", m.mnt], check=True)
    log = commits(hub, repo)
    assert len(log) == n0 + 1
    assert log[0]["title"] == "Upload 2 files"
    # A second sync with nothing pending makes no commit.
    subprocess.run(["sync", m.path("a")], check=True)
    assert len(commits(hub, repo)) == n0 + 1


def test_moved_away_and_back_is_no_change(hub, repo, mount_factory):
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    n0 = len(commits(hub, repo))
    os.mkdir(m.path("tmp"))
    os.rename(m.path(SHARD1), m.path("tmp", "x"))
    assert pending(m) == ["deleted " + SHARD1, "modified tmp/x"]
    os.rename(m.path("tmp", "x"), m.path(SHARD1))
    fsync(m.mnt)
    assert len(commits(hub, repo)) == n0
    assert pending(m) == []


def test_a_pr_ref_is_writable(hub, mount_factory):
    name = "tester/w-pr-ref"
    hub.seed("seed-model", name, "--shards", "1", "--shard-size", "1MiB")
    pr = hub.get("/api/models/%s/revision/refs%%2Fpr%%2F1" % name).json()
    main = head(hub, name)
    m = mount_factory(hub, name, "revision=refs/pr/1", token=WRITE)
    write(m.path("review.txt"), b"looks good\n")
    fsync(m.mnt)
    now = hub.get("/api/models/%s/revision/refs%%2Fpr%%2F1" % name).json()
    assert now["sha"] != pr["sha"]
    assert head(hub, name) == main
    log = hub.get("/api/models/%s/commits/refs%%2Fpr%%2F1" % name).json()
    assert log[0]["title"] == "Upload review.txt"
    assert log[1]["id"] == pr["sha"]


def test_commit_message_template(hub, repo, mount_factory):
    m = mount_factory(hub, repo, "commit_delay=600000",
                      "commit_message=ckpt: {count} files; {first} first "
                      "({default})", token=WRITE)
    write(m.path("b.json"), b"{}\n")
    write(m.path("a.json"), b"[]\n")
    fsync(m.mnt)
    c = commits(hub, repo)[0]
    assert c["title"] == "ckpt: 2 files; a.json first (Upload 2 files)"
    assert "updated: a.json" in c["message"]


def test_commit_max_delay_commits_while_a_file_stays_open(hub, repo,
                                                          mount_factory):
    """A writer that never closes its file (a log, a long checkpoint
    write) still gets commits, every commit_max_delay."""
    m = mount_factory(hub, repo, "commit_delay=500",
                      "commit_max_delay=1500", token=WRITE)
    n0 = len(commits(hub, repo))
    with open(m.path("train.log"), "wb", buffering=0) as f:
        f.write(b"step 1\n")
        # Open for writing: no quiet-period commit, but the maximum delay
        # passes.
        assert wait_for(lambda: len(commits(hub, repo)) > n0, 10)
        f.write(b"step 2\n")
    assert wait_for(lambda: tree(hub, repo)["train.log"]["size"] == 14, 15)
