"""git and git-lfs as an independent oracle for the local Hub.

Every repository the Hub API describes must be exactly what `git clone` +
`git lfs pull` produce: same commits, same tree and blob ids, same bytes.
Files and commits written through the API (NDJSON commit + LFS batch upload)
must come back through git, and a `git push` (with git-lfs' pre-push upload)
must show up in the API.  git runs with an isolated HOME (only
`git lfs install --skip-repo` in its config), no system config and no
terminal prompt, so nothing depends on this machine and nothing hangs.
"""

import base64
import concurrent.futures
import hashlib
import json
import os
import time
import urllib.parse
import uuid

import pytest

from conftest import WRITE, READ, BOB, Git, http_request

PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SPEC = b"version https://git-lfs.github.com/spec/v1\n"
MODEL_REVS = ["main", "dev", "feature/x", "v1.0", "v2.0", "refs/pr/1"]


@pytest.fixture(scope="module")
def git(tmp_path_factory):
    g = Git(str(tmp_path_factory.mktemp("githome")))
    g.run("lfs", "install", "--skip-repo")
    cfg = g.out("config", "--global", "--list").decode()
    assert "filter.lfs.process=git-lfs filter-process" in cfg
    assert "credential" not in cfg
    g.run("config", "--global", "user.name", "Git Oracle")
    g.run("config", "--global", "user.email", "oracle@localhub.invalid")
    g.run("config", "--global", "init.defaultBranch", "main")
    return g


# --- Hub helpers -------------------------------------------------------------

def qrev(rev):
    return urllib.parse.quote(rev, safe="")


def qpath(path):
    return urllib.parse.quote(path, safe="/")


def api_json(hub, path, token=None):
    r = hub.get(path, token=token)
    assert r.status == 200, (path, r)
    return r


def list_tree(hub, rtype, repo, rev, token=None):
    """All entries of a recursive listing, following Link rel=next; returns
    (entries, commit from X-Repo-Commit, pages)."""
    url = "%s/api/%ss/%s/tree/%s?recursive=true" % (hub.url, rtype, repo,
                                                      qrev(rev))
    entries, commits, pages = [], set(), 0
    while url:
        r = api_json(hub, url, token)
        commits.add(r.header("X-Repo-Commit"))
        entries += r.json()
        pages += 1
        link = r.header("Link")
        url = None
        if link:
            assert link.startswith("<"), link
            assert link.endswith('>; rel="next"'), link
            url = link[1:link.index(">")]
            assert url.startswith(hub.url + "/api/"), url
    assert len(commits) == 1, commits
    return entries, commits.pop(), pages


def download(hub, rtype, repo, rev, path, token=None):
    """GET /resolve/, following a 302 to the CDN WITHOUT Authorization.
    Returns (bytes, X-Repo-Commit, redirected)."""
    r = hub.get("/%s%s/resolve/%s/%s" % (PREFIX[rtype], repo, qrev(rev),
                                         qpath(path)), token=token)
    commit = r.header("X-Repo-Commit")
    if r.status == 302:
        loc = r.header("Location")
        assert loc.startswith(hub.cdn + "/"), loc
        c = http_request(loc, "GET", {})
        assert c.status == 200, (path, c)
        return c.body, commit, True
    assert r.status == 200, (path, r)
    return r.body, commit, False


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def parse_pointer(data):
    assert data.startswith(LFS_SPEC), data[:80]
    lines = data.decode().splitlines()
    assert len(lines) == 3 and lines[1].startswith("oid sha256:") and \
        lines[2].startswith("size "), data
    return lines[1][len("oid sha256:"):], int(lines[2][5:])


def pointer(oid, size):
    return LFS_SPEC + b"oid sha256:%s\nsize %d\n" % (oid.encode(), size)


def worktree_files(root):
    out = {}
    for d, dirs, files in os.walk(root):
        if d == root:
            dirs[:] = [x for x in dirs if x != ".git"]
        for f in files:
            full = os.path.join(d, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, root)] = fh.read()
    return out


def batch_check(git, cwd, rev, paths):
    """`git rev-parse REV:path` for many paths at once: {path: (oid, type,
    size)}."""
    inp = "".join("%s:%s\n" % (rev, p) for p in paths).encode()
    out = git.out("cat-file", "--batch-check=%(objectname) %(objecttype) "
                  "%(objectsize)", cwd=cwd, input=inp).decode().splitlines()
    assert len(out) == len(paths)
    res = {}
    for p, line in zip(paths, out):
        oid, typ, size = line.split(" ")
        res[p] = (oid, typ, int(size))
    return res


def compare_checkout(hub, git, wt, rtype, repo, rev, token=None,
                     expect_commit=None):
    """The checked-out worktree of `rev` must equal what the API serves."""
    head = git.out("rev-parse", "HEAD", cwd=wt).decode().strip()
    if expect_commit is not None:
        assert head == expect_commit
    info = api_json(hub, "/api/%ss/%s/revision/%s" % (rtype, repo, qrev(rev)),
                    token).json()
    assert info["sha"] == head
    entries, tree_commit, pages = list_tree(hub, rtype, repo, rev, token)
    assert tree_commit == head
    # 100 entries a page on the module's hub
    assert pages == max(1, -(-len(entries) // 100))
    paths = [e["path"] for e in entries]
    assert len(set(paths)) == len(paths)

    # Tree entries against git's own objects.
    objs = batch_check(git, wt, head, paths)
    git_all = git.out("ls-tree", "-r", "-t", "-z", "--name-only", head,
                      cwd=wt).split(b"\0")
    assert sorted(p.encode() for p in paths) == sorted(x for x in git_all if x)
    files = [e for e in entries if e["type"] == "file"]
    lfs_entries = [e for e in files if "lfs" in e]
    pointers = {}
    if lfs_entries:
        inp = "".join("%s\n" % objs[e["path"]][0] for e in lfs_entries)
        raw = git.out("cat-file", "--batch", cwd=wt, input=inp.encode())
        pos = 0
        for e in lfs_entries:
            nl = raw.index(b"\n", pos)
            size = int(raw[pos:nl].split()[2])
            pointers[e["path"]] = raw[nl + 1:nl + 1 + size]
            pos = nl + 1 + size + 1
    for e in entries:
        oid, typ, size = objs[e["path"]]
        assert e["oid"] == oid, e
        if e["type"] == "directory":
            assert typ == "tree", e
            continue
        assert e["type"] == "file" and typ == "blob", e
        if "lfs" in e:
            assert e["lfs"]["pointerSize"] == size, e
            assert parse_pointer(pointers[e["path"]]) == (
                e["lfs"]["oid"], e["lfs"]["size"]), e
            assert e["size"] == e["lfs"]["size"], e
        else:
            assert e["size"] == size, e

    # Worktree bytes (after git lfs pull) against /resolve/ downloads.
    wt_files = worktree_files(wt)
    assert sorted(wt_files) == sorted(e["path"] for e in files)

    def fetch(e):
        return e, download(hub, rtype, repo, rev, e["path"], token)

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        results = list(ex.map(fetch, files))
    for e, (data, commit, redirected) in results:
        assert commit == head, e
        assert redirected == ("lfs" in e), e
        assert data == wt_files[e["path"]], e["path"]
        assert len(data) == e["size"], e
        if "lfs" in e:
            assert hashlib.sha256(data).hexdigest() == e["lfs"]["oid"], e
        else:
            assert git_blob_id(data) == e["oid"], e
    return head, entries


def assert_no_cdn_auth(hub, seq):
    time.sleep(0.1)     # entries are logged just after their response
    log = hub.log_since(seq)
    cdn = [e for e in log if e["origin"] == "cdn"]
    assert cdn, "no request reached the CDN"
    assert [e for e in cdn if e["auth"]] == []
    assert all(e["status"] == 200 for e in cdn), cdn
    assert hub.leaks() == []


# --- repositories created through the API ------------------------------------

def create_repo(hub, private=False, rtype="model", token=WRITE):
    name = "git-%s" % uuid.uuid4().hex[:10]
    r = hub.request("POST", "/api/repos/create", token=token, body={
        "name": name, "organization": "alice", "type": rtype,
        "private": private})
    assert r.status == 200, r
    assert r.json()["name"] == "alice/" + name
    return "alice/" + name


def lfs_upload(hub, rtype, repo, data, token=WRITE):
    oid = hashlib.sha256(data).hexdigest()
    r = hub.request("POST", "/%s%s.git/info/lfs/objects/batch" % (
        PREFIX[rtype], repo), token=token, headers={
            "Accept": "application/vnd.git-lfs+json",
            "Content-Type": "application/vnd.git-lfs+json"}, body=json.dumps({
                "operation": "upload", "transfers": ["basic"],
                "hash_algo": "sha256",
                "objects": [{"oid": oid, "size": len(data)}]}).encode())
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/vnd.git-lfs+json"
    body = r.json()
    assert body["transfer"] == "basic"
    (obj,) = body["objects"]
    assert (obj["oid"], obj["size"]) == (oid, len(data))
    up = obj["actions"]["upload"]
    assert up["href"].startswith(hub.cdn + "/"), up
    p = http_request(up["href"], "PUT", dict(up.get("header") or {}), data)
    assert p.status == 200, p
    verify = obj["actions"]["verify"]
    assert verify["href"].startswith(hub.url + "/"), verify
    h = dict(verify.get("header") or {})    # what git-lfs would send
    h.setdefault("Authorization", "Bearer " + token)
    h["Accept"] = "application/vnd.git-lfs+json"
    v = http_request(verify["href"], "POST", h,
                     {"oid": oid, "size": len(data)})
    assert v.status == 200, v
    return oid


def api_commit(hub, rtype, repo, files, lfs_files, token=WRITE,
               summary="API commit", branch="main"):
    lines = [{"key": "header", "value": {"summary": summary,
                                         "description": "via NDJSON"}}]
    for path, data in files.items():
        lines.append({"key": "file", "value": {
            "path": path, "encoding": "base64",
            "content": base64.b64encode(data).decode()}})
    for path, data in lfs_files.items():
        oid = lfs_upload(hub, rtype, repo, data, token)
        lines.append({"key": "lfsFile", "value": {
            "path": path, "algo": "sha256", "oid": oid, "size": len(data)}})
    body = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    r = hub.request("POST", "/api/%ss/%s/commit/%s" % (rtype, repo, branch),
                    token=token, body=body,
                    headers={"Content-Type": "application/x-ndjson"})
    assert r.status == 200, r
    return r.json()["commitOid"]


def clone(git, url, dest, *opts, check=True, env=None):
    return git.run(*opts, "clone", "-q", url, dest, check=check, env=env)


def cred_url(hub, path, token):
    u = urllib.parse.urlsplit(hub.url)
    return "http://alice:%s@%s/%s" % (token, u.netloc, path)


def lfs_filter(git, wt, path):
    """The `filter` attribute git applies to path."""
    out = git.out("check-attr", "-z", "filter", "--", path, cwd=wt)
    name, attr, value, end = out.split(b"\0")
    assert (name.decode(), attr, end) == (path, b"filter", b"")
    return value.decode()


def status_clean(git, wt):
    assert git.out("status", "--porcelain", "--untracked-files=all",
                   cwd=wt) == b""


# --- clones of the seeded repositories ---------------------------------------

def test_git_ls_remote_matches_refs_api(hub, git):
    refs = api_json(hub, "/api/models/tester/model1/refs?include_prs=1").json()
    want = {}
    for kind in ("branches", "tags", "pullRequests"):
        for r in refs[kind]:
            want[r["ref"]] = r["targetCommit"]
    assert want["refs/pr/1"] == hub.seeded["model"]["refs/pr/1"]
    for version in ("0", "2"):
        out = git.out("-c", "protocol.version=" + version, "ls-remote",
                      hub.url + "/tester/model1").decode()
        got = {}
        for line in out.splitlines():
            sha, name = line.split("\t")
            got[name] = sha
        assert got.pop("HEAD") == hub.seeded["model"]["main"]
        assert got == want, version


@pytest.mark.parametrize("rtype,repo,kind,protocol", [
    ("dataset", "tester/ds1", "dataset", "2"),
    ("space", "tester/sp1", "space", "2"),
    ("space", "tester/sp1", "space", "0"),
])
def test_clone_matches_api(hub, git, tmp_path, rtype, repo, kind, protocol):
    seq = hub.mark()
    wt = str(tmp_path / "wt")
    clone(git, "%s/%s%s" % (hub.url, PREFIX[rtype], repo), wt,
          "-c", "protocol.version=" + protocol)
    git.run("lfs", "pull", cwd=wt)
    status_clean(git, wt)
    head, entries = compare_checkout(hub, git, wt, rtype, repo, "main",
                                     expect_commit=hub.seeded[kind]["main"])
    assert any("lfs" in e for e in entries)
    if rtype == "dataset":
        # .gitattributes, README.md, 1200 rows, 4 parquet files
        assert len([e for e in entries if e["type"] == "file"]) == 1206
    assert_no_cdn_auth(hub, seq)


def test_clone_model_every_revision_matches_api(hub, git, tmp_path):
    seq = hub.mark()
    seeded = hub.seeded["model"]
    wt = str(tmp_path / "wt")
    clone(git, hub.url + "/tester/model1", wt)
    assert git.out("rev-parse", "--abbrev-ref", "HEAD", cwd=wt) == b"main\n"
    git.run("fetch", "-q", "origin", "refs/pr/1", cwd=wt)
    targets = {"main": "main", "dev": "origin/dev",
               "feature/x": "origin/feature/x", "v1.0": "v1.0",
               "v2.0": "v2.0", "refs/pr/1": "FETCH_HEAD"}
    seen_lfs = set()
    for rev in MODEL_REVS:
        git.run("checkout", "-q", "--detach", targets[rev], cwd=wt)
        git.run("lfs", "pull", cwd=wt)
        status_clean(git, wt)
        head, entries = compare_checkout(hub, git, wt, "model",
                                         "tester/model1", rev,
                                         expect_commit=seeded[rev])
        seen_lfs |= {e["path"] for e in entries if "lfs" in e}
        names = {e["path"] for e in entries}
        if rev in ("main", "v2.0", "feature/x", "refs/pr/1"):
            assert "notes/changes with spaces #1.md" in names
        if rev == "dev":
            assert "dev-only.txt" in names
    assert seen_lfs == {"model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors",
                        "extra/weights.bin"}
    assert_no_cdn_auth(hub, seq)


# --- API writes read back through git ----------------------------------------

ROUND_TRIP_FILES = {
    "README.md": b"# round trip\n",
    "empty.txt": b"",
    "bin/bytes.dat": bytes(range(256)) * 40,
    "src/\u00f1 dir/file with space #1.txt":
        "h\u00e9llo w\u00f6rld\n".encode(),
    "config.json": b'{"a": 1}\n',
}


def test_api_commit_round_trips_through_git(hub, git, tmp_path):
    seq = hub.mark()
    repo = create_repo(hub)
    lfs_files = {
        "weights/model.safetensors": os.urandom(1_500_000),
        # not matched by the default patterns: the server must track it
        "data/raw blob.raw": os.urandom(70_000),
    }
    commit = api_commit(hub, "model", repo, ROUND_TRIP_FILES, lfs_files)
    wt = str(tmp_path / "wt")
    clone(git, "%s/%s" % (hub.url, repo), wt)
    assert git.out("rev-parse", "HEAD", cwd=wt).decode().strip() == commit
    # Before git lfs pull: pointers in the worktree, exact pointer blobs.
    for path, data in lfs_files.items():
        ptr = pointer(hashlib.sha256(data).hexdigest(), len(data))
        assert git.out("show", "HEAD:" + path, cwd=wt) == ptr
        with open(os.path.join(wt, path), "rb") as f:
            assert f.read() == ptr
        assert lfs_filter(git, wt, path) == "lfs"
    for path, data in ROUND_TRIP_FILES.items():
        assert git.out("show", "HEAD:" + path, cwd=wt) == data
        assert git.out("rev-parse", "HEAD:" + path, cwd=wt).decode().strip() \
            == git_blob_id(data)
        assert lfs_filter(git, wt, path) == "unspecified"
    ls = git.out("lfs", "ls-files", "-l", cwd=wt).decode().splitlines()
    assert sorted(ls) == sorted("%s - %s" % (hashlib.sha256(d).hexdigest(), p)
                                for p, d in lfs_files.items())
    git.run("lfs", "pull", cwd=wt)
    status_clean(git, wt)
    got = worktree_files(wt)
    attrs = got.pop(".gitattributes")
    assert b"data/raw[[:space:]]blob.raw filter=lfs diff=lfs merge=lfs -text" \
        in attrs.splitlines()
    assert got == dict(ROUND_TRIP_FILES, **lfs_files)
    compare_checkout(hub, git, wt, "model", repo, "main",
                     expect_commit=commit)
    msg = git.out("log", "-1", "--format=%s%n%b%n%an", cwd=wt).decode()
    assert msg.split("\n")[:3] == ["API commit", "via NDJSON", "alice"]
    assert_no_cdn_auth(hub, seq)


# --- private repositories ----------------------------------------------------

@pytest.mark.parametrize("how", ["url", "extraheader"])
def test_private_repo_clone_needs_credentials(hub, git, tmp_path, how):
    repo = create_repo(hub, private=True)
    files = {"secret.txt": b"top secret\n"}
    lfs_files = {"secret.bin": os.urandom(123_456)}
    commit = api_commit(hub, "model", repo, files, lfs_files)
    assert hub.get("/api/models/" + repo).status == 401
    url = "%s/%s" % (hub.url, repo)

    # Anonymous: 401 with a Basic challenge; git gives up without a prompt.
    seq = hub.mark()
    t0 = time.time()
    p = clone(git, url, str(tmp_path / "anon"), check=False)
    assert p.returncode == 128, p.stderr
    assert b"could not read Username" in p.stderr, p.stderr
    assert time.time() - t0 < 20
    assert not os.path.exists(str(tmp_path / "anon" / ".git"))
    # (the log is written after each response: filter out the tail of the
    # previous request)
    entries = [e for e in hub.log_since(seq) if e["route"] == "git"]
    assert [(e["status"], e["auth"], e.get("query")) for e in entries] == [
        (401, False, "service=git-upload-pack")]

    # Someone else's token: the repo does not exist for them.
    p = clone(git, cred_url(hub, repo, BOB), str(tmp_path / "bob"),
              check=False)
    assert p.returncode == 128, p.stderr
    assert b"not found" in p.stderr, p.stderr

    # The owner's token: clone, git lfs pull, same bytes; the CDN never
    # sees the token.
    seq = hub.mark()
    wt = str(tmp_path / "wt")
    if how == "url":
        clone(git, cred_url(hub, repo, READ), wt)
        token = READ
    else:
        git.run("clone", "-q", "-c", "http.%s/.extraHeader=Authorization: "
                "Bearer %s" % (hub.url, WRITE), url, wt)
        token = WRITE
    assert git.out("rev-parse", "HEAD", cwd=wt).decode().strip() == commit
    git.run("lfs", "pull", cwd=wt)
    status_clean(git, wt)
    got = worktree_files(wt)
    got.pop(".gitattributes")
    assert got == dict(files, **lfs_files)
    compare_checkout(hub, git, wt, "model", repo, "main", token=token,
                     expect_commit=commit)
    log = hub.log_since(seq)
    batch = [e for e in log if e["route"] == "lfs-batch"]
    assert batch and all(e["auth"] and e["status"] == 200 for e in batch)
    assert [e for e in log if e["route"] == "git" and e["status"] == 200
            and e["auth"]]
    assert_no_cdn_auth(hub, seq)


# --- git push ----------------------------------------------------------------

def test_git_push_regular_and_lfs_files(hub, git, tmp_path):
    repo = create_repo(hub)
    base = api_commit(hub, "model", repo, {"README.md": b"base\n"}, {})
    wt = str(tmp_path / "wt")
    clone(git, cred_url(hub, repo, WRITE), wt)
    git.run("lfs", "install", "--local", cwd=wt)
    assert os.path.exists(os.path.join(wt, ".git", "hooks", "pre-push"))
    regular = b"pushed through git\n"
    big = os.urandom(250_000)
    other = os.urandom(33_333)
    new = {"pushed.txt": regular, "weights/pushed.bin": big,
           "dir with space/\u00fc #2.bin": other,
           # a pack over http.postBuffer (1 MiB): sent chunked
           "random.dat": os.urandom(1_500_000)}
    for path, data in new.items():
        full = os.path.join(wt, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    git.run("add", "-A", cwd=wt)
    git.run("commit", "-q", "-m", "Push through git", cwd=wt)
    head = git.out("rev-parse", "HEAD", cwd=wt).decode().strip()
    for path in ("weights/pushed.bin", "dir with space/\u00fc #2.bin"):
        data = new[path]
        assert git.out("show", "HEAD:" + path, cwd=wt) == pointer(
            hashlib.sha256(data).hexdigest(), len(data))

    # A read-only token is refused by receive-pack (before the pre-push
    # hook runs) and by the LFS batch API; main does not move.
    seq = hub.mark()
    git.run("remote", "add", "ro", cred_url(hub, repo, READ), cwd=wt)
    p = git.run("push", "ro", "HEAD:refs/heads/main", cwd=wt, check=False)
    assert p.returncode == 128, p.stderr
    assert b"The requested URL returned error: 403" in p.stderr, p.stderr
    p = git.run("lfs", "push", "ro", "HEAD", cwd=wt, check=False)
    assert p.returncode != 0, p.stderr
    log = hub.log_since(seq)
    assert [(e["status"], e["auth"]) for e in log if e["route"] == "git"
            and "receive-pack" in e.get("query", "") + e["path"]] == [
                (401, False), (403, True)]
    assert [e for e in log if e["route"] == "lfs-batch"
            and e["status"] == 403 and e["auth"]]
    assert not [e for e in log if e["route"] == "cdn-put"]
    info = api_json(hub, "/api/models/%s/revision/main" % repo).json()
    assert info["sha"] == base

    # The write token: LFS objects go to the CDN, then the ref moves.
    seq = hub.mark()
    git.run("push", "-q", "origin", "HEAD:refs/heads/main", cwd=wt)
    git.run("push", "-q", "origin", "HEAD:refs/heads/from-git", cwd=wt)
    log = hub.log_since(seq)
    puts = [e for e in log if e["route"] == "cdn-put"]
    assert len(puts) == 2 and all(e["status"] == 200 for e in puts)
    verifies = [e for e in log if e["route"] == "lfs-verify"]
    assert [(e["status"], e["auth"]) for e in verifies] == [(200, True)] * 2
    assert_no_cdn_auth(hub, seq)
    for rev in ("main", "from-git"):
        info = api_json(hub, "/api/models/%s/revision/%s" % (repo, rev)).json()
        assert info["sha"] == head
    entries, commit, _ = list_tree(hub, "model", repo, "main")
    assert commit == head
    by_path = {e["path"]: e for e in entries}
    for path, data in new.items():
        got, commit, redirected = download(hub, "model", repo, "main", path)
        assert (got, commit) == (data, head)
        assert redirected == path.endswith(".bin")
        if path.endswith(".bin"):
            assert by_path[path]["lfs"]["oid"] == \
                hashlib.sha256(data).hexdigest()
    compare_checkout(hub, git, wt, "model", repo, "from-git",
                     expect_commit=head)
