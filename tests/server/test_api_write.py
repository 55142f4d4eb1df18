"""The local Hub's write API and auth: preupload, LFS batch (basic and
multipart), NDJSON commits, PRs, branches, tags, repos, tokens, private and
gated repos, rate limits."""

import base64
import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import WRITE, READ, BOB, CAROL, http_request

LFS_HEADERS = {"Accept": "application/vnd.git-lfs+json",
               "Content-Type": "application/vnd.git-lfs+json"}


def ndjson(summary, ops, parent=None, description=""):
    head = {"summary": summary, "description": description}
    if parent:
        head["parentCommit"] = parent
    lines = [{"key": "header", "value": head}] + ops
    return ("\n".join(json.dumps(x) for x in lines) + "\n").encode()


def file_op(path, data):
    return {"key": "file", "value": {"path": path, "encoding": "base64",
                                     "content": base64.b64encode(data).decode()}}


def lfs_op(path, data):
    return {"key": "lfsFile", "value": {
        "path": path, "algo": "sha256", "size": len(data),
        "oid": hashlib.sha256(data).hexdigest()}}


def commit(hub, repo, ops, rev="main", parent=None, token=WRITE, query=""):
    kind, rid = repo.split("/", 1) if repo.count("/") == 2 else ("models", repo)
    return hub.request("POST", "/api/%s/%s/commit/%s%s" % (
        kind, rid, urllib.parse.quote(rev, safe=""), query), token=token,
        headers={"Content-Type": "application/x-ndjson"},
        body=ndjson("test commit", ops, parent))


def lfs_upload(hub, repo_path, data, token=WRITE):
    """batch + PUT (basic or multipart + completion), as the clients do."""
    oid = hashlib.sha256(data).hexdigest()
    r = hub.request("POST", "/%s.git/info/lfs/objects/batch" % repo_path,
                    token=token, headers=LFS_HEADERS, body=json.dumps({
                        "operation": "upload", "transfers": ["basic",
                                                             "multipart"],
                        "hash_algo": "sha256", "ref": {"name": "main"},
                        "objects": [{"oid": oid, "size": len(data)}]}).encode())
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/vnd.git-lfs+json"
    obj = r.json()["objects"][0]
    if "actions" not in obj:
        return obj, r.json()
    up = obj["actions"]["upload"]
    chunk = up.get("header", {}).get("chunk_size")
    if chunk is None:
        p = http_request(up["href"], "PUT", {}, data)
        assert p.status == 200, p
    else:
        chunk = int(chunk)
        parts = sorted(k for k in up["header"] if k.isdigit())
        etags = []
        for i, k in enumerate(parts):
            p = http_request(up["header"][k], "PUT", {},
                             data[i * chunk:(i + 1) * chunk])
            assert p.status == 200, p
            etags.append({"partNumber": i + 1, "etag": p.header("ETag")})
        c = http_request(up["href"], "POST", {}, {"oid": oid, "parts": etags})
        assert c.status == 200, c
    return obj, r.json()


@pytest.fixture(scope="module")
def whub(localhub_factory_module):
    return localhub_factory_module


@pytest.fixture(scope="module")
def localhub_factory_module(tmp_path_factory):
    from conftest import LocalHub
    h = LocalHub(str(tmp_path_factory.mktemp("whub")),
                 ["--multipart-threshold", "1MiB", "--multipart-chunk",
                  "256KiB"])
    h.start()
    yield h
    h.stop()


def create_repo(hub, name, token=WRITE, **kw):
    body = {"name": name, "organization": "alice"}
    body.update(kw)
    r = hub.request("POST", "/api/repos/create", token=token, body=body)
    assert r.status == 200, r
    return r.json()


def head(hub, repo, rev="main", token=WRITE):
    kind, rid = repo.split("/", 1) if repo.count("/") == 2 else ("models", repo)
    return hub.get("/api/%s/%s/revision/%s" % (
        kind, rid, urllib.parse.quote(rev, safe="")), token=token).json()["sha"]


def fetch(hub, repo_path, rev, path, token=None):
    r = hub.get("/%s/resolve/%s/%s" % (repo_path, urllib.parse.quote(
        rev, safe=""), urllib.parse.quote(path)), token=token)
    if r.status == 302:
        r = http_request(r.header("Location"))
    assert r.status == 200, r
    return r.body


# --- identity ------------------------------------------------------------

def test_whoami(whub):
    r = whub.get("/api/whoami-v2", token=WRITE)
    d = r.json()
    assert d["name"] == "alice" and d["auth"]["accessToken"]["role"] == "write"
    assert {o["name"] for o in d["orgs"]} == {"tester", "acme"}
    assert whub.get("/api/whoami-v2", token=READ).json()["auth"][
        "accessToken"]["role"] == "read"
    assert whub.get("/api/whoami-v2").status == 401


def test_bad_token_is_refused_everywhere(whub):
    for path in ("/api/whoami-v2", "/api/models/alice/x",
                 "/alice/x/resolve/main/a"):
        r = whub.get(path, token="hf_not_a_known_token")
        assert r.status == 401, path
        assert r.header("X-Error-Message") == \
            "Invalid credentials in Authorization header"
        assert r.json()["error"] == "Invalid credentials in Authorization header"


def test_validate_yaml(whub):
    r = whub.request("POST", "/api/validate-yaml", token=WRITE,
                     body={"content": "---\nlicense: mit\n---\n",
                           "repoType": "model"})
    assert r.json() == {"errors": [], "warnings": []}


# --- repos ---------------------------------------------------------------

def test_create_repo_starts_with_gitattributes(whub):
    out = create_repo(whub, "fresh")
    assert out["name"] == "alice/fresh"
    assert out["url"].endswith("/alice/fresh")
    commits = whub.get("/api/models/alice/fresh/commits/main").json()
    assert [c["title"] for c in commits] == ["initial commit"]
    attrs = fetch(whub, "alice/fresh", "main", ".gitattributes").decode()
    for pat in ("*.safetensors", "*.bin", "*.pt", "*.gguf", "*.parquet"):
        assert "%s filter=lfs diff=lfs merge=lfs -text" % pat in attrs
    again = whub.request("POST", "/api/repos/create", token=WRITE,
                         body={"name": "fresh", "organization": "alice"})
    assert again.status == 409
    other = whub.request("POST", "/api/repos/create", token=BOB,
                         body={"name": "x", "organization": "alice"})
    assert other.status == 403
    ro = whub.request("POST", "/api/repos/create", token=READ,
                      body={"name": "y"})
    assert ro.status == 403
    ds = create_repo(whub, "dsfresh", type="dataset")
    assert ds["url"].endswith("/datasets/alice/dsfresh")
    assert whub.get("/api/datasets/alice/dsfresh").status == 200


def test_delete_repo(whub):
    create_repo(whub, "doomed")
    r = whub.request("DELETE", "/api/repos/delete", token=WRITE,
                     body={"name": "doomed", "organization": "alice",
                           "type": "model"})
    assert r.status == 200
    assert whub.get("/api/models/alice/doomed", token=WRITE).status == 404


# --- preupload --------------------------------------------------------------

def test_preupload_modes(whub):
    create_repo(whub, "pre")
    files = [
        {"path": "w.safetensors", "size": 10, "sample": ""},
        {"path": "empty.bin", "size": 0, "sample": ""},
        {"path": "notes.txt", "size": 20,
         "sample": base64.b64encode(b"hello text").decode()},
        {"path": "huge.txt", "size": (10 << 20) + 1,
         "sample": base64.b64encode(b"hello text").decode()},
        {"path": "blob.dat", "size": 4,
         "sample": base64.b64encode(b"\0\1\2\3").decode()},
        {"path": "sub/deep/x.parquet", "size": 5, "sample": ""},
    ]
    r = whub.request("POST", "/api/models/alice/pre/preupload/main",
                     token=WRITE, body={"files": files})
    modes = {f["path"]: f["uploadMode"] for f in r.json()["files"]}
    assert modes == {"w.safetensors": "lfs", "empty.bin": "regular",
                     "notes.txt": "regular", "huge.txt": "lfs",
                     "blob.dat": "lfs", "sub/deep/x.parquet": "lfs"}
    assert all(f["shouldIgnore"] is False for f in r.json()["files"])
    # An explicit .gitattributes in the request wins over the branch's.
    r = whub.request("POST", "/api/models/alice/pre/preupload/main",
                     token=WRITE, body={"files": [
                         {"path": "a.txt", "size": 3, "sample": "YWJj"}],
                         "gitAttributes": "*.txt filter=lfs diff=lfs merge=lfs -text\n"})
    assert r.json()["files"][0]["uploadMode"] == "lfs"
    # Existing paths report their remote oid.
    commit(whub, "alice/pre", [file_op("notes.txt", b"hello text")])
    r = whub.request("POST", "/api/models/alice/pre/preupload/main",
                     token=WRITE, body={"files": [files[2]]})
    assert r.json()["files"][0]["oid"] == subprocess.run(
        ["git", "hash-object", "--stdin"], input=b"hello text",
        stdout=subprocess.PIPE).stdout.decode().strip()
    r = whub.request("POST", "/api/models/alice/pre/preupload/main",
                     token=READ, body={"files": files})
    assert r.status == 403


# --- commits ---------------------------------------------------------------

def test_commit_regular_lfs_and_deletes(whub):
    create_repo(whub, "c1")
    big = os.urandom(300000)
    obj, reply = lfs_upload(whub, "alice/c1", big)
    assert reply["transfer"] == "basic"
    base = head(whub, "alice/c1")
    r = commit(whub, "alice/c1", [
        file_op("a/b/c.txt", b"abc"), file_op("a/d.txt", b"ddd"),
        file_op("keep.txt", b"keep"), lfs_op("data/big.bin", big),
        lfs_op("odd/weights.dat", big)], parent=base)
    assert r.status == 200, r
    c1 = r.json()["commitOid"]
    assert r.json()["commitUrl"].endswith("/alice/c1/commit/" + c1)
    assert head(whub, "alice/c1") == c1
    assert fetch(whub, "alice/c1", c1, "data/big.bin") == big
    assert fetch(whub, "alice/c1", c1, "a/b/c.txt") == b"abc"
    tree = {e["path"]: e for e in whub.get(
        "/api/models/alice/c1/tree/%s?recursive=1" % c1).json()}
    assert tree["data/big.bin"]["lfs"]["oid"] == hashlib.sha256(big).hexdigest()
    assert "lfs" not in tree["a/d.txt"]
    # An lfsFile outside the tracked patterns becomes tracked.
    attrs = fetch(whub, "alice/c1", c1, ".gitattributes").decode()
    assert "odd/weights.dat filter=lfs diff=lfs merge=lfs -text" in attrs
    r = commit(whub, "alice/c1", [
        {"key": "deletedFile", "value": {"path": "keep.txt"}},
        {"key": "deletedFolder", "value": {"path": "a/"}}], parent=c1)
    assert r.status == 200, r
    paths = {e["path"] for e in whub.get(
        "/api/models/alice/c1/tree/main?recursive=1").json()}
    assert "keep.txt" not in paths and not any(p.startswith("a/") for p in paths)
    assert "data/big.bin" in paths


def test_commit_with_awkward_file_names(whub):
    create_repo(whub, "names")
    names = ["sp ace.txt", "hash#1.txt", "q?x.txt", "pct%41.txt",
             "ünï/cödé.txt", "deep/a b/c#d?e%f.txt"]
    r = commit(whub, "alice/names", [file_op(n, n.encode()) for n in names])
    assert r.status == 200, r
    for n in names:
        assert fetch(whub, "alice/names", "main", n) == n.encode()
    got = {e["path"] for e in whub.get(
        "/api/models/alice/names/tree/main?recursive=true").json()}
    assert set(names) <= got


def test_commit_conflict_is_412(whub):
    create_repo(whub, "race")
    base = head(whub, "alice/race")
    whub.admin("POST", "/push", {"repo": "alice/race", "files": {
        "other.txt": "pushed behind your back"}})
    r = commit(whub, "alice/race", [file_op("mine.txt", b"x")], parent=base)
    assert r.status == 412
    assert "updated since" in r.json()["error"]
    assert fetch(whub, "alice/race", "main", "other.txt") == \
        b"pushed behind your back"
    # A short parentCommit that matches the head is accepted.
    h = head(whub, "alice/race")
    assert commit(whub, "alice/race", [file_op("mine.txt", b"x")],
                  parent=h[:7]).status == 200


def test_commit_rejections(whub):
    create_repo(whub, "rej")
    r = commit(whub, "alice/rej", [file_op("big.txt", b"x" * ((10 << 20) + 1))])
    assert r.status == 400 and "10 MiB" in r.json()["error"]
    r = commit(whub, "alice/rej", [lfs_op("w.bin", b"never uploaded")])
    assert r.status == 400 and "does not exist" in r.json()["error"]
    r = commit(whub, "alice/rej", [{"key": "deletedFile",
                                    "value": {"path": "absent"}}])
    assert r.status == 404 and r.header("X-Error-Code") == "EntryNotFound"
    for bad in ("../x", "a/../b", ".git/config", "a//b", "x/.git/y"):
        r = commit(whub, "alice/rej", [file_op(bad, b"x")])
        assert r.status == 400, bad
    r = commit(whub, "alice/rej", [file_op("a", b"x"), file_op("a/b", b"y")])
    assert r.status == 400
    r = commit(whub, "alice/rej", [file_op("x.txt", b"x")], token=READ)
    assert r.status == 403
    r = commit(whub, "alice/rej", [file_op("x.txt", b"x")], token=BOB)
    assert r.status == 403
    r = commit(whub, "alice/rej", [file_op("x.txt", b"x")], rev="v9")
    assert r.status == 404
    r = whub.request("POST", "/api/models/alice/rej/commit/main",
                     token=WRITE, body=b'{"key":"file","value":{}}\n')
    assert r.status == 400
    assert [c["title"] for c in whub.get(
        "/api/models/alice/rej/commits/main").json()] == ["initial commit"]


def test_create_pr_and_commit_to_pr(whub):
    create_repo(whub, "prs")
    r = commit(whub, "alice/prs", [file_op("p.txt", b"pr")], query="?create_pr=1")
    assert r.status == 200, r
    assert r.json()["pullRequestUrl"].endswith("/alice/prs/discussions/1")
    refs = whub.get("/api/models/alice/prs/refs?include_prs=1").json()
    assert refs["pullRequests"][0]["targetCommit"] == r.json()["commitOid"]
    r2 = commit(whub, "alice/prs", [file_op("p2.txt", b"more")],
                rev="refs/pr/1")
    assert r2.status == 200
    assert head(whub, "alice/prs", "refs/pr/1") == r2.json()["commitOid"]
    assert fetch(whub, "alice/prs", "refs/pr/1", "p.txt") == b"pr"
    r3 = commit(whub, "alice/prs", [file_op("q.txt", b"q")],
                query="?create_pr=1")
    assert r3.json()["pullRequestUrl"].endswith("/discussions/2")
    main = whub.get("/api/models/alice/prs/tree/main").json()
    assert "p.txt" not in {e["path"] for e in main}


def test_multipart_upload(whub):
    create_repo(whub, "mp")
    data = os.urandom((1 << 20) + 200000)       # above the 1 MiB threshold
    seq = whub.mark()
    obj, reply = lfs_upload(whub, "alice/mp", data)
    up = obj["actions"]["upload"]
    assert up["header"]["chunk_size"] == str(256 << 10)
    assert sorted(k for k in up["header"] if k.isdigit()) == [
        "00001", "00002", "00003", "00004", "00005"]
    routes = [e["route"] for e in whub.log_since(seq)]
    assert routes.count("cdn-part") == 5 and routes.count("lfs-complete") == 1
    assert commit(whub, "alice/mp", [lfs_op("m.bin", data)]).status == 200
    assert fetch(whub, "alice/mp", "main", "m.bin") == data
    # Already stored: no actions the second time.
    obj, _ = lfs_upload(whub, "alice/mp", data)
    assert "actions" not in obj


def test_upload_with_wrong_content_is_refused(whub):
    create_repo(whub, "badput")
    data = b"the real content" * 100
    oid = hashlib.sha256(data).hexdigest()
    r = whub.request("POST", "/alice/badput.git/info/lfs/objects/batch",
                     token=WRITE, headers=LFS_HEADERS, body=json.dumps({
                         "operation": "upload", "objects": [
                             {"oid": oid, "size": len(data)}]}).encode())
    href = r.json()["objects"][0]["actions"]["upload"]["href"]
    bad = http_request(href, "PUT", {}, b"x" * len(data))
    assert bad.status == 400
    assert commit(whub, "alice/badput", [lfs_op("x.bin", data)]).status == 400
    verify = r.json()["objects"][0]["actions"]["verify"]["href"]
    v = http_request(verify, "POST", {"Authorization": "Bearer " + WRITE},
                     {"oid": oid, "size": len(data)})
    assert v.status == 404
    assert http_request(href, "PUT", {}, data).status == 200
    v = http_request(verify, "POST", {"Authorization": "Bearer " + WRITE},
                     {"oid": oid, "size": len(data)})
    assert v.status == 200


def test_lfs_batch_download_and_js_hash_algo(whub):
    create_repo(whub, "dl")
    data = os.urandom(5000)
    lfs_upload(whub, "alice/dl", data)
    oid = hashlib.sha256(data).hexdigest()
    r = whub.request("POST", "/alice/dl.git/info/lfs/objects/batch",
                     headers=LFS_HEADERS, body=json.dumps({
                         "operation": "download", "hash_algo": "sha_256",
                         "objects": [{"oid": oid, "size": len(data)},
                                     {"oid": "0" * 64, "size": 1}]}).encode())
    objs = r.json()["objects"]
    assert http_request(objs[0]["actions"]["download"]["href"]).body == data
    assert objs[1]["error"]["code"] == 404
    r = whub.request("POST", "/alice/dl.git/info/lfs/objects/batch",
                     headers=LFS_HEADERS, body=json.dumps({
                         "operation": "upload", "objects": [
                             {"oid": oid, "size": len(data)}]}).encode())
    assert r.status == 401


# --- branches and tags --------------------------------------------------------

def test_branches(whub):
    create_repo(whub, "br")
    c = commit(whub, "alice/br", [file_op("f.txt", b"1")]).json()["commitOid"]
    url = "/api/models/alice/br/branch/"
    assert whub.request("POST", url + "dev", token=WRITE, body={}).status == 200
    assert head(whub, "alice/br", "dev") == c
    assert whub.request("POST", url + "dev", token=WRITE, body={}).status == 409
    r = whub.request("POST", url + "feat%2Fy", token=WRITE,
                     body={"startingPoint": c})
    assert r.status == 200 and head(whub, "alice/br", "feat/y") == c
    r = whub.request("POST", url + "empty", token=WRITE,
                     body={"emptyBranch": True})
    assert r.status == 200
    assert whub.get("/api/models/alice/br/tree/empty").json() == []
    for bad in ("refs%2Fpr%2F5", "a..b", "x~y"):
        assert whub.request("POST", url + bad, token=WRITE,
                            body={}).status == 400, bad
    assert whub.request("POST", url + "z", token=READ, body={}).status == 403
    assert whub.request("DELETE", url + "dev", token=WRITE).status == 200
    assert whub.request("DELETE", url + "dev", token=WRITE).status == 404
    assert whub.request("DELETE", url + "main", token=WRITE).status == 403


def test_tags(whub):
    create_repo(whub, "tg")
    c = head(whub, "alice/tg")
    url = "/api/models/alice/tg/tag/main"
    assert whub.request("POST", url, token=WRITE,
                        body={"tag": "v1"}).status == 200
    assert whub.request("POST", url, token=WRITE,
                        body={"tag": "v1"}).status == 409
    assert whub.request("POST", url, token=WRITE,
                        body={"tag": "v2", "message": "annotated"}).status == 200
    refs = whub.get("/api/models/alice/tg/refs").json()
    assert {t["name"]: t["targetCommit"] for t in refs["tags"]} == {
        "v1": c, "v2": c}
    assert head(whub, "alice/tg", "v2") == c
    assert whub.request("DELETE", "/api/models/alice/tg/tag/v1",
                        token=WRITE).status == 200
    assert whub.request("DELETE", "/api/models/alice/tg/tag/v1",
                        token=WRITE).status == 404
    # A tag is not a branch: commits to it are refused.
    assert commit(whub, "alice/tg", [file_op("x", b"x")], rev="v2").status == 400


# --- private and gated repos -----------------------------------------------------

def test_private_repo(whub):
    create_repo(whub, "secret", private=True)
    commit(whub, "alice/secret", [file_op("s.txt", b"s")])
    r = whub.get("/api/models/alice/secret")
    assert r.status == 401 and r.header("X-Error-Code") == "RepoNotFound"
    r = whub.get("/alice/secret/resolve/main/s.txt")
    assert r.status == 401 and r.header("X-Error-Code") == "RepoNotFound"
    r = whub.get("/api/models/alice/secret", token=CAROL)
    assert r.status == 404 and r.header("X-Error-Code") == "RepoNotFound"
    assert whub.get("/api/models/alice/secret", token=READ).json()["private"]
    assert fetch(whub, "alice/secret", "main", "s.txt", token=READ) == b"s"
    # Not found and private look the same from outside.
    assert whub.get("/api/models/alice/nothing").status == 401


def test_gated_repo(whub):
    create_repo(whub, "gated")
    commit(whub, "alice/gated", [file_op("g.txt", b"g")])
    whub.admin("POST", "/settings", {"repo": "alice/gated", "gated": "manual"})
    assert whub.get("/api/models/alice/gated").json()["gated"] == "manual"
    assert whub.get("/api/models/alice/gated/tree/main").status == 200
    r = whub.get("/alice/gated/resolve/main/g.txt", token=CAROL)
    assert r.status == 403 and r.header("X-Error-Code") == "GatedRepo"
    r = whub.get("/alice/gated/resolve/main/g.txt")
    assert r.status == 401 and r.header("X-Error-Code") == "GatedRepo"
    assert fetch(whub, "alice/gated", "main", "g.txt", token=READ) == b"g"
    whub.admin("POST", "/settings", {"repo": "alice/gated",
                                     "gated_access": ["carol"]})
    assert fetch(whub, "alice/gated", "main", "g.txt", token=CAROL) == b"g"


def test_settings_endpoint(whub):
    create_repo(whub, "vis")
    r = whub.request("PUT", "/api/models/alice/vis/settings", token=WRITE,
                     body={"private": True})
    assert r.status == 200
    assert whub.get("/api/models/alice/vis").status == 401
    r = whub.request("PUT", "/api/models/alice/vis/settings", token=WRITE,
                     body={"gated": "sometimes"})
    assert r.status == 400


# --- rate limits -------------------------------------------------------------

def test_rate_limit(localhub_factory):
    h = localhub_factory("--rate-limit", "3", "--rate-window", "60")
    h.seed("seed-space", "spaces/tester/s")
    h.start()
    statuses = [h.get("/api/spaces/tester/s").status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = h.get("/api/spaces/tester/s")
    assert r.status == 429
    assert r.header("RateLimit").startswith('"api";r=0;t=')
    assert r.header("RateLimit-Policy") == '"fixed window";"api";q=3;w=60'
    assert 1 <= int(r.header("Retry-After")) <= 60
    # Resolvers have their own budget.
    assert h.get("/spaces/tester/s/resolve/main/README.md").status == 200
    h.admin("POST", "/ratelimit", {"limit": None})
    assert h.get("/api/spaces/tester/s").status == 200


def test_upload_rate_is_one_link_for_all_uploads(localhub_factory):
    """--upload-rate: uploads at once share the rate, as on one link."""
    h = localhub_factory("--upload-rate", "4MiB")
    h.seed("seed-model", "tester/slow", "--no-history", "--shards", "1",
           "--shard-size", "1MiB")
    h.start()
    blobs = [os.urandom(3 << 20) for _ in range(2)]
    done = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda b=b: done.append(
        lfs_upload(h, "tester/slow", b))) for b in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - t0
    assert len(done) == 2
    # 6 MiB at 4 MiB/s, whatever the number of connections.
    assert elapsed >= 1.4, elapsed
