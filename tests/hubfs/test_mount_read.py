"""The read path, on real mounts against the local Hub, with git and git-lfs
checkouts of the same revisions as the oracle."""

import errno
import hashlib
import json
import mmap
import multiprocessing
import os
import stat
import subprocess
import threading
import time

import pytest

from conftest import (BLOCK, HUBFS, READ, CAROL, Git, http_request,
                      real_bytes)

MODEL_REVS = ["main", "dev", "feature/x", "v1.0", "v2.0", "refs/pr/1"]
SHARD1 = "model-00001-of-00002.safetensors"


def one_shard_hub(localhub_factory, repo, shard_size):
    """A started server with @repo: a model of one safetensors shard."""
    h = localhub_factory()
    h.seed("seed-model", repo, "--no-history", "--shards", "1",
           "--shard-size", shard_size)
    h.start()
    return h


def enc(rev):
    return rev.replace("%", "%25").replace("/", "%2F")


def snapshot(root, skip=(".git",)):
    """{relative path: bytes} for files, and the set of directories."""
    files, dirs = {}, set()
    for d, subdirs, names in os.walk(root):
        subdirs[:] = [s for s in subdirs if s not in skip]
        rel = os.path.relpath(d, root)
        if rel != ".":
            dirs.add(rel)
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                files[os.path.normpath(os.path.join(rel, n))] = f.read()
    return files, dirs


def assert_same_tree(mounted, checkout):
    mf, md = snapshot(mounted)
    gf, gd = snapshot(checkout)
    assert sorted(mf) == sorted(gf)
    assert md == gd
    for p in gf:
        assert mf[p] == gf[p], p


@pytest.fixture(scope="module")
def oracle(hub, tmp_path_factory):
    """git checkouts of any revision of the seeded repos."""
    git = Git(str(tmp_path_factory.mktemp("githome")))
    git.run("lfs", "install", "--skip-repo")
    base = str(tmp_path_factory.mktemp("checkouts"))
    clones = {}

    def checkout(repo, rev):
        key = (repo, rev)
        if key in clones:
            return clones[key]
        d = os.path.join(base, "%d" % len(clones))
        git.run("clone", "-q", hub.url + "/" + repo, d)
        git.run("fetch", "-q", "origin", "+%s:refs/oracle/x" % (
            rev if rev.startswith("refs/") or len(rev) == 40
            else ("refs/tags/" + rev if rev.startswith("v")
                  else "refs/heads/" + rev)), cwd=d)
        git.run("checkout", "-q", "--detach", "refs/oracle/x", cwd=d)
        git.run("lfs", "pull", cwd=d)
        clones[key] = d
        return d
    return checkout


# --- what the mount shows ---------------------------------------------------

def test_root_is_the_default_branch(hub, mount_factory, oracle):
    m = mount_factory(hub, "tester/model1")
    assert_same_tree(m.mnt, oracle("tester/model1", "main"))
    assert os.getxattr(m.mnt, "user.hubfs.commit").decode() == \
        hub.seeded["model"]["main"]


def test_every_revision_under_revisions(hub, mount_factory, oracle):
    s = hub.seeded["model"]
    m = mount_factory(hub, "tester/model1")
    for rev in MODEL_REVS + [s["first"], s["initial"]]:
        d = m.path(".revisions", enc(rev))
        assert_same_tree(d, oracle("tester/model1", rev))
        want = s.get(rev, rev)
        assert os.getxattr(d, "user.hubfs.commit").decode() == want, rev


def test_revision_in_the_source(hub, mount_factory, oracle):
    m = mount_factory(hub, "tester/model1@feature%2Fx")
    assert_same_tree(m.mnt, oracle("tester/model1", "feature/x"))
    m2 = mount_factory(hub, "tester/model1", "revision=v1.0")
    assert_same_tree(m2.mnt, oracle("tester/model1", "v1.0"))


def test_revisions_directory(hub, mount_factory):
    m = mount_factory(hub, "tester/model1")
    assert ".revisions" not in os.listdir(m.mnt)
    assert os.path.isdir(m.path(".revisions"))
    assert sorted(os.listdir(m.path(".revisions"))) == sorted(
        ["main", "dev", "feature%2Fx", "v1.0", "v2.0"])
    # Reachable by name although not listed.
    assert os.path.isdir(m.path(".revisions", "refs%2Fpr%2F1"))
    assert os.path.isdir(m.path(".revisions", hub.seeded["model"]["first"]))
    for bad in ("feature%2fx", "feature/x", "nope", "refs%2Fpr%2F9",
                "%2Fmain", "0" * 40):
        assert not os.path.exists(m.path(".revisions", bad)), bad


def test_diff_and_cp_across_revisions(hub, mount_factory, tmp_path):
    m = mount_factory(hub, "tester/model1")
    r = subprocess.run(["diff", "-r", m.path(".revisions", "v1.0"),
                        m.path(".revisions", "main")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 1, r.stderr
    out = r.stdout.decode()
    assert "config.json" in out and "Only in" in out and "notes" in out
    r = subprocess.run(["diff", "-r", m.mnt, m.path(".revisions", "main")])
    assert r.returncode == 0
    commit = hub.seeded["model"]["first"]
    dest = tmp_path / "copy"
    dest.mkdir()
    r = subprocess.run("cp -r %s/tokenizer* %s/" % (
        m.path(".revisions", commit), dest), shell=True)
    assert r.returncode == 0
    assert sorted(os.listdir(dest)) == ["tokenizer.json",
                                         "tokenizer_config.json"]
    with open(m.path("tokenizer.json"), "rb") as f:
        assert (dest / "tokenizer.json").read_bytes() == f.read()


def test_attributes_and_xattrs(hub, mount_factory):
    m = mount_factory(hub, "tester/model1", "uid=1234", "gid=4321")
    tree = {e["path"]: e for e in hub.get(
        "/api/models/tester/model1/tree/main?recursive=true&limit=1000"
    ).json()}
    date = hub.get("/api/models/tester/model1/commits/main").json()[0]["date"]
    commit_time = time.mktime(time.strptime(date[:19], "%Y-%m-%dT%H:%M:%S")) \
        - time.timezone
    for path, e in tree.items():
        st = os.stat(m.path(path))
        assert st.st_uid == 1234 and st.st_gid == 4321
        assert st.st_mtime == commit_time
        if e["type"] == "directory":
            assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o555
            continue
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444
        assert st.st_size == e["size"]
        assert os.getxattr(m.path(path), "user.hubfs.oid").decode() == e["oid"]
        names = set(os.listxattr(m.path(path)))
        if "lfs" in e:
            assert os.getxattr(m.path(path), "user.hubfs.sha256").decode() \
                == e["lfs"]["oid"]
            assert "user.hubfs.sha256" in names
        else:
            assert "user.hubfs.sha256" not in names
    out = subprocess.run(["getfattr", "-d", m.path(SHARD1)],
                         stdout=subprocess.PIPE).stdout.decode()
    assert "user.hubfs.sha256=" in out and "user.hubfs.commit=" in out
    with pytest.raises(OSError) as e:
        os.getxattr(m.path("config.json"), "user.hubfs.sha256")
    assert e.value.errno == errno.ENODATA


def test_inode_numbers_are_stable_across_mounts(hub, mount_factory):
    def inodes(m):
        return {p: os.stat(m.path(p)).st_ino for p in (
            "config.json", SHARD1, "notes", ".revisions/v1.0/config.json")}
    m1 = mount_factory(hub, "tester/model1")
    a = inodes(m1)
    m1.stop()
    m2 = mount_factory(hub, "tester/model1")
    assert inodes(m2) == a
    assert len(set(a.values())) == 4


def test_read_only(hub, mount_factory):
    m = mount_factory(hub, "tester/model1", "ro")
    for fn in (lambda: open(m.path("config.json"), "w"),
               lambda: open(m.path("new.txt"), "w"),
               lambda: os.mkdir(m.path("d")),
               lambda: os.unlink(m.path("config.json"))):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EROFS


def test_dataset_over_many_tree_pages(hub, mount_factory, oracle):
    seq = hub.mark()
    m = mount_factory(hub, "datasets/tester/ds1")
    assert_same_tree(m.mnt, oracle("datasets/tester/ds1", "main"))
    log = hub.log_since(seq)
    pages = [e for e in log if e["route"] == "tree"]
    assert len(pages) == 13           # 1200 files + dirs + 2, 100 a page
    assert not [e for e in log if e["route"] == "paths-info"]


def test_space_repo(hub, mount_factory, oracle):
    m = mount_factory(hub, "spaces/tester/sp1")
    assert_same_tree(m.mnt, oracle("spaces/tester/sp1", "main"))


# --- what crosses the network -------------------------------------------------

def data_requests(entries):
    return [e for e in entries if e["route"] in ("resolve", "cdn-get",
                                                 "resolve-cache")]


def test_second_read_and_remount_fetch_nothing(hub, mount_factory, tmp_path):
    cache = str(tmp_path / "cache")
    m = mount_factory(hub, "tester/model1", cache_dir=cache, token=READ)
    with open(m.path(SHARD1), "rb") as f:
        first = f.read()
    seq = hub.mark()
    with open(m.path(SHARD1), "rb") as f:
        assert f.read() == first
    assert data_requests(hub.log_since(seq)) == []
    m.stop()
    seq = hub.mark()
    m2 = mount_factory(hub, "tester/model1", cache_dir=cache, token=READ)
    with open(m2.path(SHARD1), "rb") as f:
        assert f.read() == first
    log = hub.log_since(seq)
    assert data_requests(log) == []
    # The tree of a commit is listed once per cache lifetime.
    assert [e for e in log if e["route"] == "tree"] == []
    assert all(not e["auth"] for e in hub.log_since(0) if e["origin"] == "cdn")


def test_only_touched_bytes_cross_the_network(hub, mount_factory):
    m = mount_factory(hub, "tester/model1")
    seq = hub.mark()
    # os.pread: Python's buffered read would ask for st_blksize bytes.
    fd = os.open(m.path(SHARD1), os.O_RDONLY)
    try:
        os.pread(fd, 4096, 2 << 20)
    finally:
        os.close(fd)
    cdn = [e for e in hub.log_since(seq) if e["route"] == "cdn-get"]
    assert len(cdn) >= 1
    # One block: the kernel's readahead for a 4 KiB read at a block's
    # start stays inside it.
    assert sum(e["bytes"] for e in cdn) <= BLOCK
    assert all(e["range"] for e in cdn)


def test_loaders_sharing_out_tensors_get_readahead(localhub_factory,
                                                   mount_factory):
    # Four loaders each take every fourth 512 KiB tensor of one file, as
    # tensor-parallel loaders do: no one handle reads in order, but
    # between them they sweep the file, and the sweep is read ahead
    # rather than fetched block by block as each handle faults.
    h = one_shard_hub(localhub_factory, "tester/big", "32MiB")
    name = "model-00001-of-00001.safetensors"
    real = real_bytes(h, "tester/big", name)
    m = mount_factory(h, "tester/big")
    path = m.path(name)
    size = os.stat(path).st_size
    assert size == len(real)
    tensor, piece, n = 512 << 10, 128 << 10, 4
    got = {}
    barrier = threading.Barrier(n)
    seq = h.mark()

    def loader(r):
        fd = os.open(path, os.O_RDONLY)
        try:
            for t in range(0, size // tensor, n):
                barrier.wait(timeout=60)
                off = (t + r) * tensor
                for p in range(0, tensor if off < size else 0, piece):
                    got[off + p] = os.pread(fd, piece, off + p)
        finally:
            os.close(fd)

    threads = [threading.Thread(target=loader, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    body = b"".join(got[o] for o in sorted(got))
    assert len(body) == size // tensor * tensor
    assert body == real[:len(body)]
    cdn = [e for e in h.log_since(seq) if e["route"] == "cdn-get"]
    # Fetched block by block this is about one request per block (128).
    assert len(cdn) <= (size + BLOCK - 1) // BLOCK // 4, len(cdn)
    assert sum(e["bytes"] for e in cdn) <= size


def test_shared_content_is_fetched_once(hub, mount_factory):
    m = mount_factory(hub, "tester/model1")
    seq = hub.mark()
    with open(m.path(".revisions", "v1.0", SHARD1), "rb") as f:
        a = f.read()
    with open(m.path(".revisions", "main", SHARD1), "rb") as f:
        b = f.read()
    assert a == b
    cdn = [e for e in hub.log_since(seq) if e["route"] == "cdn-get"]
    assert sum(e["bytes"] for e in cdn) == len(a)


def test_signed_url_is_reused(hub, mount_factory):
    m = mount_factory(hub, "tester/model1")
    seq = hub.mark()
    with open(m.path("model-00002-of-00002.safetensors"), "rb") as f:
        for off in range(0, 3 << 20, 1 << 20):
            f.seek(off)
            f.read(10)
    log = hub.log_since(seq)
    assert len([e for e in log if e["route"] == "resolve"]) == 1
    assert len([e for e in log if e["route"] == "cdn-get"]) >= 2


# --- consistency ----------------------------------------------------------------

def test_branch_move_and_open_file_keeps_its_content(localhub_factory,
                                                     mount_factory):
    h = one_shard_hub(localhub_factory, "tester/m", "2MiB")
    m = mount_factory(h, "tester/m", "refresh=1")
    old_cfg = open(m.path("config.json"), "rb").read()
    f = open(m.path("model-00001-of-00001.safetensors"), "rb")
    head = f.read(1 << 20)
    new_shard = os.urandom(2 << 20)
    pushed = h.admin("POST", "/push", {"repo": "tester/m", "files": {
        "config.json": "{}\n",
        "model-00001-of-00001.safetensors": {
            "base64": __import__("base64").b64encode(new_shard).decode(),
            "lfs": True}}})
    time.sleep(2.5)
    assert open(m.path("config.json"), "rb").read() == b"{}\n"
    assert os.getxattr(m.mnt, "user.hubfs.commit").decode() == \
        pushed["commitOid"]
    with open(m.path("model-00001-of-00001.safetensors"), "rb") as g:
        assert g.read() == new_shard
    rest = f.read()
    f.close()
    old = open(m.path(".revisions", pushed["parent"],
                      "model-00001-of-00001.safetensors"), "rb").read()
    assert head + rest == old and old != new_shard
    assert old_cfg != b"{}\n"


def test_branch_move_shows_in_subdirectories(localhub_factory, mount_factory):
    # Directories below the root are cached by the kernel for as long as
    # their tree id stands; a move upstream must still show at every depth
    # once the root's entries expire.
    h = one_shard_hub(localhub_factory, "tester/m", "64KiB")
    old_files = {"a/one.txt": "one\n", "a/deep/two.txt": "two\n",
                 "a/deep/gone.txt": "gone\n", "b/three.txt": "three\n"}
    first = h.admin("POST", "/push", {"repo": "tester/m", "files": old_files})
    m = mount_factory(h, "tester/m", "refresh=1")
    before = snapshot(m.mnt)[0]
    for k, v in old_files.items():
        assert before[k] == v.encode()
    assert sorted(os.listdir(m.path("a", "deep"))) == ["gone.txt", "two.txt"]
    pushed = h.admin("POST", "/push", {
        "repo": "tester/m", "files": {"a/deep/two.txt": "TWO!\n",
                                       "a/deep/new.txt": "new\n"},
        "delete": ["a/deep/gone.txt"]})
    time.sleep(2.5)
    assert sorted(os.listdir(m.path("a", "deep"))) == ["new.txt", "two.txt"]
    after = snapshot(m.mnt)[0]
    want = dict(before)
    del want["a/deep/gone.txt"]
    want["a/deep/two.txt"] = b"TWO!\n"
    want["a/deep/new.txt"] = b"new\n"
    assert after == want
    assert not os.path.exists(m.path("a", "deep", "gone.txt"))
    old = m.path(".revisions", first["commitOid"])
    assert sorted(os.listdir(os.path.join(old, "a", "deep"))) == \
        ["gone.txt", "two.txt"]
    assert open(os.path.join(old, "a", "deep", "two.txt"), "rb").read() == \
        b"two\n"
    assert pushed["parent"] == first["commitOid"]


# --- errors ---------------------------------------------------------------------

def run_hubfs(hub, source, tmp_path, *opts, token=None, endpoint=None):
    from conftest import Mount
    m = Mount(str(tmp_path), source, endpoint or hub.url, opts, token)
    p = subprocess.run(m.argv(foreground=False), env=m.env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if p.returncode == 0:
        subprocess.run(["fusermount3", "-u", m.mnt])
    return p.returncode, p.stderr.decode()


@pytest.fixture(scope="module")
def ehub(tmp_path_factory):
    from conftest import LocalHub
    h = LocalHub(str(tmp_path_factory.mktemp("ehub")))
    h.seed("seed-model", "tester/public", "--no-history", "--shards", "1",
           "--shard-size", "64KiB")
    h.seed("seed-model", "tester/private", "--no-history", "--shards", "1",
           "--shard-size", "64KiB", "--private")
    h.seed("seed-model", "tester/gated", "--no-history", "--shards", "1",
           "--shard-size", "64KiB", "--gated", "manual")
    h.start()
    yield h
    h.stop()


@pytest.mark.parametrize("source,token,message", [
    ("tester/nope", None, "not found"),
    ("tester/private", None, "not found"),
    ("tester/private", CAROL, "not found"),
    ("tester/public@nobranch", None, "revision nobranch not found"),
    ("tester/public", "hf_invalid_token_123456", "token"),
])
def test_mount_errors(ehub, tmp_path, source, token, message):
    code, err = run_hubfs(ehub, source, tmp_path, token=token)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hubfs: "), err
    assert message in lines[0].lower(), err
    assert not os.path.ismount(str(tmp_path / "mnt"))
    if token:
        assert token not in err


@pytest.mark.parametrize("token,code", [(None, 401), (CAROL, 403)])
def test_gated_repo_without_access(ehub, tmp_path, token, code):
    code_, err = run_hubfs(ehub, "tester/gated", tmp_path, token=token)
    assert code_ == 1, err
    assert err.startswith("hubfs: ") and len(err.strip().splitlines()) == 1
    assert "gated" in err.lower() or "restricted" in err.lower(), err


def test_gated_repo_with_access(ehub, mount_factory):
    m = mount_factory(ehub, "tester/gated", token=READ)
    assert json.loads(open(m.path("config.json"), "rb").read())


def test_private_repo_with_token(ehub, mount_factory):
    m = mount_factory(ehub, "tester/private", token=READ)
    assert json.loads(open(m.path("config.json"), "rb").read())
    assert ehub.leaks() == []


def test_unreachable_endpoint(tmp_path):
    from conftest import Mount
    m = Mount(str(tmp_path), "tester/x", "http://127.0.0.1:9", ())
    p = subprocess.run(m.argv(foreground=False), env=m.env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    assert p.returncode == 1
    assert p.stderr.decode().startswith("hubfs: ")


def test_daemon_mode_returns_when_mounted(ehub, tmp_path):
    from conftest import Mount
    m = Mount(str(tmp_path), "tester/public", ehub.url, ())
    p = subprocess.run(m.argv(foreground=False), env=m.env(), timeout=60,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.returncode == 0, p.stderr
        assert os.path.ismount(m.mnt)
        assert "config.json" in os.listdir(m.mnt)
    finally:
        subprocess.run(["fusermount3", "-u", m.mnt])


def hub_retries(mnt):
    """The mount's count of retried Hub requests (hubfs metrics)."""
    out = subprocess.run([HUBFS, "metrics", mnt], stdout=subprocess.PIPE,
                         check=True, timeout=60).stdout.decode()
    found = [line.split()[-1] for line in out.splitlines()
             if line.startswith("hubfs_hub_retries_total{")]
    assert len(found) == 1, out
    return int(float(found[0]))


def test_offline_restart_serves_cached_commit(localhub_factory, mount_factory,
                                              tmp_path):
    """Offline, a mount serves the commits it remembers.  Only the first
    lookup waits out the retries: once the Hub is known unreachable, the
    next revision is looked up with one attempt."""
    h = localhub_factory()
    h.seed("seed-model", "tester/m", "--shards", "1", "--shard-size", "1MiB")
    h.start()
    cache = str(tmp_path / "cache")
    m = mount_factory(h, "tester/m", cache_dir=cache)
    want = snapshot(m.mnt)
    commit = os.getxattr(m.mnt, "user.hubfs.commit").decode()
    v1 = snapshot(m.path(".revisions", "v1.0"))
    m.stop()
    h.stop()
    m2 = mount_factory(h, "tester/m", cache_dir=cache)
    assert snapshot(m2.mnt) == want
    assert os.getxattr(m2.mnt, "user.hubfs.commit").decode() == commit
    retried = hub_retries(m2.mnt)
    assert retried > 0
    assert snapshot(m2.path(".revisions", "v1.0")) == v1
    assert hub_retries(m2.mnt) == retried
    m2.stop()
    assert "last known commit" in m2.errors()


def test_offline_tag_is_read_only(localhub_factory, mount_factory,
                                   tmp_path):
    """Offline, hubfs cannot tell a tag from a branch: a named revision is
    mounted read-only, so nothing is ever staged for a tag's name."""
    from conftest import WRITE
    h = localhub_factory()
    h.seed("seed-model", "tester/m", "--shards", "1", "--shard-size", "1MiB")
    h.start()
    cache = str(tmp_path / "cache")
    mount_factory(h, "tester/m@v1.0", token=WRITE, cache_dir=cache).stop()
    h.stop()
    m = mount_factory(h, "tester/m@v1.0", token=WRITE, cache_dir=cache,
                      start=False)
    m.start(timeout=120)	# the Hub's silence is retried first
    assert "config.json" in os.listdir(m.mnt)
    with pytest.raises(OSError) as e:
        open(m.path("new.txt"), "wb")
    assert e.value.errno == errno.EROFS
    m.stop()
    assert "mounting read-only" in m.errors()


# --- faults ------------------------------------------------------------------------

@pytest.fixture
def fault_hub(localhub_factory):
    return one_shard_hub(localhub_factory, "tester/m", "8MiB")


def shard_bytes(h):
    r = h.get("/tester/m/resolve/main/model-00001-of-00001.safetensors")
    return http_request(r.header("Location")).body


@pytest.mark.parametrize("fault", [
    {"route": "cdn-get", "fraction": 0.3, "seed": 3, "status": 503},
    {"route": "cdn-get", "action": "reset", "after_bytes": 300000,
     "fraction": 0.5, "seed": 1},
    {"route": "cdn-get", "action": "truncate", "after_bytes": 100000,
     "times": 3},
    {"route": "cdn-get", "status": 429, "retry_after": 1, "times": 2},
    {"route": "resolve", "status": 500, "times": 2},
])
def test_transient_faults_give_correct_bytes(fault_hub, mount_factory, fault):
    want = shard_bytes(fault_hub)
    fault_hub.admin("POST", "/faults", fault)
    m = mount_factory(fault_hub, "tester/m")
    with open(m.path("model-00001-of-00001.safetensors"), "rb") as f:
        assert f.read() == want


def test_cold_read_is_answered_before_its_block_is_whole(fault_hub,
                                                         mount_factory):
    """A random read is answered once its own bytes have arrived: here the
    Hub stalls 5 s after the first 64 KiB of the block, and a 4 KiB read at
    the block's start must not wait for the rest of it."""
    want = shard_bytes(fault_hub)
    fault_hub.admin("POST", "/faults", {
        "route": "cdn-get", "action": "stall", "after_bytes": 65536,
        "seconds": 5, "times": 1})
    m = mount_factory(fault_hub, "tester/m")
    fd = os.open(m.path("model-00001-of-00001.safetensors"), os.O_RDONLY)
    try:
        t0 = time.monotonic()
        got = os.pread(fd, 4096, 2 << 20)
        elapsed = time.monotonic() - t0
        assert got == want[2 << 20:(2 << 20) + 4096]
        assert elapsed < 2.5, elapsed
        # The stalled transfer still fills the block, and every byte of
        # the file is right.
        assert os.pread(fd, 1 << 20, 2 << 20) == want[2 << 20:3 << 20]
        assert os.pread(fd, len(want), 0) == want
    finally:
        os.close(fd)


@pytest.mark.parametrize("action", ["ignore_range", "wrong_range"])
def test_wrong_answers_are_eio_never_wrong_bytes(fault_hub, mount_factory,
                                                 action):
    fault_hub.admin("POST", "/faults", {"route": "cdn-get", "action": action})
    m = mount_factory(fault_hub, "tester/m")
    with pytest.raises(OSError) as e:
        with open(m.path("model-00001-of-00001.safetensors"), "rb") as f:
            f.read()
    assert e.value.errno == errno.EIO
    fault_hub.admin("DELETE", "/faults")
    with open(m.path("model-00001-of-00001.safetensors"), "rb") as f:
        assert f.read() == shard_bytes(fault_hub)
    assert "model-00001-of-00001.safetensors" in m.errors()


# --- mmap ---------------------------------------------------------------------------

def _mmap_worker(path, want, q):
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        n = int.from_bytes(mm[:8], "little")
        meta = json.loads(mm[8:8 + n])
        ok = True
        for name, t in sorted(meta.items(), reverse=True):
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            if hashlib.sha256(mm[8 + n + a:8 + n + b]).hexdigest() != want[name]:
                ok = False
        mm.close()
    q.put(ok)


def test_mmap_by_several_processes(hub, mount_factory, oracle):
    m = mount_factory(hub, "tester/model1")
    with open(os.path.join(oracle("tester/model1", "main"), SHARD1), "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + n])
    want = {k: hashlib.sha256(data[8 + n + v["data_offsets"][0]:
                                   8 + n + v["data_offsets"][1]]).hexdigest()
            for k, v in meta.items() if k != "__metadata__"}
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_mmap_worker, args=(m.path(SHARD1), want, q))
             for _ in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == [True] * 4


def test_dataset_with_thousands_of_files(localhub_factory, mount_factory,
                                         tmp_path):
    h = localhub_factory("--page-size", "250")
    h.seed("seed-dataset", "datasets/tester/big", "--files", "3000",
           "--lfs-every", "1000", "--per-dir", "200")
    h.start()
    git = Git(str(tmp_path / "githome"))
    git.run("lfs", "install", "--skip-repo")
    checkout = str(tmp_path / "checkout")
    git.run("clone", "-q", h.url + "/datasets/tester/big", checkout)
    git.run("lfs", "pull", cwd=checkout)
    seq = h.mark()
    m = mount_factory(h, "datasets/tester/big")
    assert_same_tree(m.mnt, checkout)
    log = h.log_since(seq)
    entries = 3000 + 3 + 2 + 15 + 1 + 3  # files, parquet, top, dirs
    assert len([e for e in log if e["route"] == "tree"]) == -(-entries // 250)
    # One tree listing, then one /resolve/ per file read (a GET of a
    # regular file, a HEAD for an LFS file's CDN URL); nothing per stat.
    nfiles = len(snapshot(checkout)[0])
    assert len([e for e in log if e["route"] == "resolve"]) == nfiles
    assert [e for e in log if e["route"] == "paths-info"] == []
    assert len([e for e in log if e["route"] == "repo-info"]) == 1


def test_listing_inode_numbers_match_stat(localhub_factory, mount_factory):
    # A directory larger than one READDIRPLUS reply (about 6,000 entries
    # fit in 1 MiB): the kernel lists the rest with plain READDIR when
    # nothing was looked up in between, and those entries must carry the
    # inode number stat gives too.
    h = localhub_factory()
    h.seed("seed-dataset", "datasets/tester/flat", "--files", "10000",
           "--per-dir", "10000")
    h.start()
    m = mount_factory(h, "datasets/tester/flat")
    top = m.path("data", "000", "00")     # every file (lh_seed's layout)
    with os.scandir(top) as it:
        listed = {e.name: e.inode() for e in it}
    assert len(listed) == 10000
    for name, ino in listed.items():
        assert os.stat(os.path.join(top, name)).st_ino == ino, name
