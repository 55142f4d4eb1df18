"""The write path, on real mounts against the local Hub: what writes,
renames, unlinks and fsync turn into, checked with git + git-lfs clones of
the branch as the oracle."""

import errno
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import READ, WRITE, Git

SHARD1 = "model-00001-of-00002.safetensors"


@pytest.fixture
def repo(hub, request):
    """A fresh model repo per test, seeded with a model."""
    name = "tester/w-" + request.node.name.replace("_", "-")[:60]
    hub.seed("seed-model", name, "--shards", "2", "--shard-size", "3MiB",
             "--no-history")
    return name


@pytest.fixture
def git(tmp_path):
    g = Git(str(tmp_path / "githome"))
    g.run("lfs", "install", "--skip-repo")
    return g


def head(hub, repo):
    return hub.get("/api/models/%s/revision/main" % repo).json()["sha"]


def commits(hub, repo):
    return hub.get("/api/models/%s/commits/main" % repo).json()


def clone(git, hub, repo, dest):
    git.run("clone", "-q", hub.url + "/" + repo, dest)
    git.run("lfs", "pull", cwd=dest)
    return dest


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def wait_for(cond, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_write_and_fsync_make_a_commit(hub, repo, mount_factory, git,
                                       tmp_path):
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


def test_read_your_writes_without_a_download(hub, repo, mount_factory):
    m = mount_factory(hub, repo, token=WRITE)
    data = os.urandom(2 * 1024 * 1024 + 5)
    write(m.path("fresh.bin"), data)
    fsync(m.path("fresh.bin"))
    seq = hub.mark()
    assert read(m.path("fresh.bin")) == data
    assert os.getxattr(m.path("fresh.bin"), "user.hubfs.sha256")
    gets = [e for e in hub.log_since(seq) if e["route"] in ("cdn-get",
                                                             "resolve")]
    assert gets == []


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
    os.kill(m.proc.pid, signal.SIGKILL)
    m.proc.wait()
    m.abort_connection()
    subprocess.run(["fusermount3", "-u", "-z", m.mnt])
    m.proc = None
    m.err.close()
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


def test_conflicts(hub, repo, mount_factory, tmp_path):
    m = mount_factory(hub, repo, "commit_delay=600000", token=WRITE)
    base = head(hub, repo)

    def upstream(path, content):
        body = "\n".join(json.dumps(x) for x in (
            {"key": "header", "value": {"summary": "upstream " + path,
                                        "parentCommit": head(hub, repo)}},
            {"key": "file", "value": {"path": path, "content": content,
                                      "encoding": "utf-8"}})).encode()
        r = hub.request("POST", "/api/models/%s/commit/main" % repo,
                        token=WRITE, body=body,
                        headers={"Content-Type": "application/x-ndjson"})
        assert r.status == 200, r.body
    # Another path changed upstream: the commit is rebased.
    write(m.path("mine.txt"), b"mine\n")
    upstream("theirs.txt", "theirs\n")
    fsync(m.mnt)
    log = commits(hub, repo)
    assert log[0]["title"] == "Upload mine.txt"
    assert log[1]["title"] == "upstream theirs.txt"
    assert read(m.path("theirs.txt")) == b"theirs\n"
    # The same path changed upstream: fsync fails, nothing is lost.
    write(m.path("both.txt"), b"local\n")
    upstream("both.txt", "upstream\n")
    with pytest.raises(OSError) as e:
        fsync(m.path("both.txt"))
    assert e.value.errno == errno.ESTALE
    assert read(m.path("both.txt")) == b"local\n"
    assert commits(hub, repo)[0]["title"] == "upstream both.txt"
    assert base != head(hub, repo)
    assert "conflict" in m.errors()
