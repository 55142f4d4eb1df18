"""The local Hub's read API: shapes, pagination, encodings, resolve and the
CDN, checked against git itself (rev-parse, ls-tree) as the oracle."""

import hashlib
import json
import os
import subprocess
import time
import urllib.parse

import pytest

from conftest import WRITE, READ, http_request


def git(hub, repo_dir, *args):
    return subprocess.run(["git", "--git-dir", repo_dir] + list(args),
                          check=True, stdout=subprocess.PIPE).stdout


def repo_dir(hub, kind, ns, name):
    return os.path.join(hub.data, "repos", kind, ns, name + ".git")


def list_all(hub, url, token=None):
    """Follow Link rel=next; returns (entries, number of pages)."""
    entries, pages = [], 0
    while url:
        r = hub.get(url, token=token)
        assert r.status == 200, r
        entries += r.json()
        pages += 1
        link = r.header("Link")
        url = None
        if link:
            assert link.endswith('>; rel="next"')
            url = link[1:link.index(">")]
    return entries, pages


def follow(hub, path, headers=None):
    """GET a /resolve/ URL, following one redirect without Authorization."""
    r = hub.get(path, headers=headers)
    if r.status in (302, 307):
        loc = r.header("Location")
        if loc.startswith("/"):
            loc = hub.url + loc
        return http_request(loc, "GET", headers or {}), r
    return r, r


# --- revision info ----------------------------------------------------------

def test_revision_info_resolves_every_kind_of_revision(hub):
    s = hub.seeded["model"]
    cases = {"": s["main"], "/revision/main": s["main"],
             "/revision/HEAD": s["main"], "/revision/v1.0": s["v1.0"],
             "/revision/dev": s["dev"],
             "/revision/feature%2Fx": s["feature/x"],
             "/revision/refs%2Fpr%2F1": s["refs/pr/1"],
             "/revision/" + s["first"]: s["first"]}
    for suffix, sha in cases.items():
        r = hub.get("/api/models/tester/model1" + suffix)
        assert r.status == 200, (suffix, r)
        assert r.json()["sha"] == sha, suffix


def test_revision_info_shape_and_blobs(hub):
    r = hub.get("/api/models/tester/model1/revision/main?blobs=true")
    info = r.json()
    assert info["id"] == "tester/model1" and info["modelId"] == "tester/model1"
    assert info["private"] is False and info["gated"] is False
    sib = {x["rfilename"]: x for x in info["siblings"]}
    shard = sib["model-00001-of-00002.safetensors"]
    assert shard["size"] == 3 << 20
    assert shard["lfs"]["size"] == 3 << 20
    assert len(shard["lfs"]["sha256"]) == 64
    rd = repo_dir(hub, "models", "tester", "model1")
    blob = git(hub, rd, "rev-parse",
               "main:model-00001-of-00002.safetensors").decode().strip()
    assert shard["blobId"] == blob
    assert "lfs" not in sib["config.json"]


def test_revision_info_expand_returns_only_asked_fields(hub):
    r = hub.get("/api/models/tester/model1/revision/main?expand=sha"
                "&expand=lastModified")
    assert set(r.json()) == {"_id", "id", "sha", "lastModified"}


def test_revision_not_found(hub):
    r = hub.get("/api/models/tester/model1/revision/nope")
    assert r.status == 404
    assert r.header("X-Error-Code") == "RevisionNotFound"
    assert "nope" in r.json()["error"]


def test_dataset_and_space_info(hub):
    d = hub.get("/api/datasets/tester/ds1").json()
    assert d["sha"] == hub.seeded["dataset"]["main"] and "modelId" not in d
    sp = hub.get("/api/spaces/tester/sp1").json()
    assert sp["sha"] == hub.seeded["space"]["main"] and sp["sdk"] == "static"


# --- tree -----------------------------------------------------------------

def test_recursive_tree_over_many_pages_matches_git(hub):
    sha = hub.seeded["dataset"]["main"]
    entries, pages = list_all(
        hub, "/api/datasets/tester/ds1/tree/main?recursive=true")
    assert pages > 10               # page size 100
    paths = [e["path"] for e in entries]
    assert len(paths) == len(set(paths))
    rd = repo_dir(hub, "datasets", "tester", "ds1")
    out = git(hub, rd, "ls-tree", "-r", "-t", "-z", "--full-tree", sha)
    want = {}
    for rec in out.split(b"\0"):
        if rec:
            meta, path = rec.split(b"\t", 1)
            want[path.decode()] = meta.split()[2].decode()
    assert {e["path"]: e["oid"] for e in entries} == want
    lfs = [e for e in entries if "lfs" in e]
    assert len(lfs) == 4            # one parquet file every 300 of 1200
    for e in lfs:
        assert e["size"] == e["lfs"]["size"] == 64 * 1024
        assert e["lfs"]["pointerSize"] < 200


def test_tree_cursor_pins_the_commit(hub):
    r = hub.get("/api/datasets/tester/ds1/tree/main?recursive=true")
    nxt = r.header("Link")[1:r.header("Link").index(">")]
    assert "cursor=" in nxt
    bad = hub.get(nxt.replace("cursor=", "cursor=x"))
    assert bad.status == 400


def test_tree_non_recursive_and_subdirectories(hub):
    top = hub.get("/api/datasets/tester/ds1/tree/main").json()
    assert {e["path"] for e in top} == {".gitattributes", "README.md", "data"}
    d = [e for e in top if e["path"] == "data"][0]
    assert d["type"] == "directory" and len(d["oid"]) == 40
    # Python encodes the folder path whole; hf-mount keeps the slashes.
    a = hub.get("/api/datasets/tester/ds1/tree/main/data%2F000%2F01").json()
    b = hub.get("/api/datasets/tester/ds1/tree/main/data/000/01").json()
    assert a == b and len(a) == 100
    assert all(e["path"].startswith("data/000/01/") for e in a)


def test_tree_limit_and_expand(hub):
    r = hub.get("/api/datasets/tester/ds1/tree/main/data%2F000%2F00?limit=7")
    assert len(r.json()) == 7 and "cursor=" in r.header("Link")
    # --page-size 100 caps what a client may ask for.
    r = hub.get("/api/datasets/tester/ds1/tree/main?recursive=1&limit=1000")
    assert len(r.json()) == 100 and "cursor=" in r.header("Link")
    r = hub.get("/api/models/tester/model1/tree/main?expand=true")
    e = {x["path"]: x for x in r.json()}
    assert e["config.json"]["lastCommit"]["id"] == hub.seeded["model"]["main"]
    assert (e["tokenizer.json"]["lastCommit"]["id"] ==
            hub.seeded["model"]["first"])


def test_tree_errors(hub):
    r = hub.get("/api/models/tester/model1/tree/main/no/such/dir")
    assert r.status == 404 and r.header("X-Error-Code") == "EntryNotFound"
    r = hub.get("/api/models/tester/model1/tree/nobranch")
    assert r.status == 404 and r.header("X-Error-Code") == "RevisionNotFound"
    r = hub.get("/api/models/tester/nomodel/tree/main")
    assert r.status == 401 and r.header("X-Error-Code") == "RepoNotFound"


def test_tree_revision_with_slash_encoded_and_unencoded(hub):
    want = hub.seeded["model"]["feature/x"]
    a = hub.get("/api/models/tester/model1/tree/feature%2Fx")
    b = hub.get("/api/models/tester/model1/tree/feature/x")   # the JS form
    assert a.status == b.status == 200
    assert a.header("X-Repo-Commit") == b.header("X-Repo-Commit") == want
    assert "feature.txt" in {e["path"] for e in a.json()}
    c = hub.get("/api/models/tester/model1/tree/refs%2Fpr%2F1")
    assert c.header("X-Repo-Commit") == hub.seeded["model"]["refs/pr/1"]


# --- paths-info, refs, commits ----------------------------------------------

def test_paths_info_json_and_form(hub):
    url = "/api/models/tester/model1/paths-info/main"
    j = hub.request("POST", url, body={"paths": ["config.json", "nope",
                                                 "notes"], "expand": False})
    assert j.status == 200
    got = {e["path"]: e["type"] for e in j.json()}
    assert got == {"config.json": "file", "notes": "directory"}
    form = urllib.parse.urlencode([("paths", "config.json"), ("paths", "x"),
                                   ("expand", "true")]).encode()
    f = hub.request("POST", url, body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert [e["path"] for e in f.json()] == ["config.json"]
    assert f.json()[0]["lastCommit"]["id"] == hub.seeded["model"]["main"]
    many = hub.request("POST", url, body={"paths": ["p%d" % i
                                                    for i in range(1001)]})
    assert many.status == 413


def test_refs(hub):
    s = hub.seeded["model"]
    r = hub.get("/api/models/tester/model1/refs").json()
    assert {b["name"]: b["targetCommit"] for b in r["branches"]} == {
        "main": s["main"], "dev": s["dev"], "feature/x": s["feature/x"]}
    assert {t["name"]: t["targetCommit"] for t in r["tags"]} == {
        "v1.0": s["v1.0"], "v2.0": s["v2.0"]}
    assert r["branches"][0]["ref"].startswith("refs/heads/")
    assert "pullRequests" not in r
    r = hub.get("/api/models/tester/model1/refs?include_prs=1").json()
    assert r["pullRequests"] == [{"name": "refs/pr/1", "ref": "refs/pr/1",
                                  "targetCommit": s["refs/pr/1"]}]


def test_commits_pagination_and_total(hub):
    s = hub.seeded["model"]
    r = hub.get("/api/models/tester/model1/commits/main?limit=2")
    assert r.header("X-Total-Count") == "4"
    seen = []
    url = "/api/models/tester/model1/commits/main?limit=2"
    while url:
        r = hub.get(url)
        seen += r.json()
        link = r.header("Link")
        url = link[1:link.index(">")] if link else None
    assert [c["id"] for c in seen] == [s["main"], s["v1.0"], s["first"],
                                       s["initial"]]
    assert seen[-1]["title"] == "initial commit"
    assert seen[0]["authors"][0]["user"] == "localhub-seed"
    assert seen[0]["date"].endswith("Z")


# --- resolve and the CDN ---------------------------------------------------

def test_resolve_regular_file_with_etag_and_range(hub):
    s = hub.seeded["model"]
    rd = repo_dir(hub, "models", "tester", "model1")
    content = git(hub, rd, "show", "v1.0:config.json")
    blob = git(hub, rd, "rev-parse", "v1.0:config.json").decode().strip()
    r = hub.get("/tester/model1/resolve/v1.0/config.json")
    assert r.status == 200 and r.body == content
    assert r.header("ETag") == '"%s"' % blob
    assert r.header("X-Repo-Commit") == s["v1.0"]
    r = hub.get("/tester/model1/resolve/v1.0/config.json",
                headers={"Range": "bytes=2-9"})
    assert r.status == 206 and r.body == content[2:10]
    assert r.header("Content-Range") == "bytes 2-9/%d" % len(content)
    r = hub.get("/tester/model1/resolve/v1.0/config.json",
                headers={"Range": "bytes=%d-" % len(content)})
    assert r.status == 416
    assert r.header("Content-Range") == "bytes */%d" % len(content)
    r = hub.request("HEAD", "/tester/model1/resolve/v1.0/config.json")
    assert r.status == 200 and r.body == b""
    assert r.header("Content-Length") == str(len(content))
    r = hub.get("/tester/model1/resolve/v1.0/config.json",
                headers={"If-None-Match": '"%s"' % blob})
    assert r.status == 304


def test_resolve_lfs_redirects_to_signed_cdn(hub):
    s = hub.seeded["model"]
    name = "model-00002-of-00002.safetensors"
    r = hub.get("/tester/model1/resolve/%s/%s" % (s["main"], name))
    assert r.status == 302
    sha = r.header("X-Linked-Etag").strip('"')
    assert r.header("X-Linked-Size") == str(3 << 20)
    assert r.header("X-Repo-Commit") == s["main"]
    loc = r.header("Location")
    assert loc.startswith(hub.cdn + "/") and "X-Signature=" in loc
    body = http_request(loc)
    assert body.status == 200 and hashlib.sha256(body.body).hexdigest() == sha
    part = http_request(loc, headers={"Range": "bytes=1000-1999"})
    assert part.status == 206 and part.body == body.body[1000:2000]
    assert part.header("Content-Range") == "bytes 1000-1999/%d" % (3 << 20)
    tail = http_request(loc, headers={"Range": "bytes=-10"})
    assert tail.body == body.body[-10:]
    bad = http_request(loc, headers={"Range": "bytes=%d-" % (3 << 20)})
    assert bad.status == 416 and bad.header("Content-Range") == "bytes */%d" % (
        3 << 20)
    # A safetensors header that parses, with offsets inside the file.
    n = int.from_bytes(body.body[:8], "little")
    meta = json.loads(body.body[8:8 + n])
    end = max(v["data_offsets"][1] for k, v in meta.items()
              if k != "__metadata__")
    assert 8 + n + end == len(body.body)


def test_resolve_every_repo_type_and_pr_revision(hub):
    for path, sha in (
            ("/datasets/tester/ds1/resolve/main/README.md",
             hub.seeded["dataset"]["main"]),
            ("/spaces/tester/sp1/resolve/main/index.html",
             hub.seeded["space"]["main"]),
            ("/tester/model1/resolve/refs%2Fpr%2F1/README.md",
             hub.seeded["model"]["refs/pr/1"])):
        r, first = follow(hub, path)
        assert r.status == 200, path
        assert first.header("X-Repo-Commit") == sha
    r = hub.get("/tester/model1/resolve/refs%2Fpr%2F1/README.md")
    assert b"Proposed change." in r.body
    r, first = follow(hub, "/spaces/tester/sp1/resolve/main/assets/model.bin")
    assert first.status == 302 and len(r.body) == 5000


def test_resolve_percent_encoded_names(hub):
    name = "notes/changes with spaces #1.md"
    r = hub.get("/tester/model1/resolve/main/" + urllib.parse.quote(name))
    assert r.status == 200
    assert r.body == "Ünïcode and spaces in a file name.\n".encode()
    # Unescaped, '#' starts a fragment: the name is cut and not found.
    r = hub.get("/tester/model1/resolve/main/notes/changes%20with%20spaces%20"
                "#1.md")
    assert r.status == 404


def test_missing_entry_still_names_the_commit(hub):
    r = hub.get("/tester/model1/resolve/main/absent.txt")
    assert r.status == 404 and r.header("X-Error-Code") == "EntryNotFound"
    assert r.header("X-Repo-Commit") == hub.seeded["model"]["main"]
    assert json.loads(r.body)["error"]
    assert r.header("X-Error-Message")


def test_raw_serves_the_pointer(hub):
    r = hub.get("/tester/model1/raw/main/model-00001-of-00002.safetensors")
    assert r.status == 200
    assert r.body.startswith(b"version https://git-lfs.github.com/spec/v1\n")


def test_cdn_refuses_and_records_authorization(hub):
    r = hub.get("/tester/model1/resolve/main/model-00001-of-00002.safetensors")
    loc = r.header("Location")
    before = len(hub.leaks())
    seq = hub.mark()
    bad = http_request(loc, headers={"Authorization": "Bearer " + READ})
    assert bad.status == 403
    leaks = hub.leaks()
    assert len(leaks) == before + 1
    assert leaks[-1]["path"].startswith("/lfs/")
    cdn = [e for e in hub.log_since(seq) if e["origin"] == "cdn"]
    assert cdn[-1]["auth"] is True and cdn[-1]["status"] == 403


def test_cdn_refuses_tampered_and_expired_urls(localhub_factory):
    h = localhub_factory("--url-lifetime", "1")
    h.seed("seed-model", "tester/m", "--no-history", "--shards", "1",
           "--shard-size", "64KiB")
    h.start()
    r = h.get("/tester/m/resolve/main/model-00001-of-00001.safetensors")
    loc = r.header("Location")
    assert http_request(loc).status == 200
    tampered = loc.replace("X-Size=", "X-Size=1")
    assert http_request(tampered).status == 403
    time.sleep(2.1)
    expired = http_request(loc)
    assert expired.status == 403 and b"expired" in expired.body


def test_resolve_cache_redirect_mode(localhub_factory):
    h = localhub_factory("--resolve-cache-redirect")
    sha = h.seed("seed-model", "tester/m", "--no-history", "--shards", "1",
                 "--shard-size", "64KiB")["main"]
    h.start()
    r = h.get("/tester/m/resolve/main/config.json")
    assert r.status == 307
    loc = r.header("Location")
    assert loc.startswith("/api/resolve-cache/models/tester/m/%s/" % sha)
    r2 = h.get(loc)
    assert r2.status == 200 and b"llama" in r2.body


def test_request_log_records_each_request(hub):
    seq = hub.mark()
    hub.get("/tester/model1/resolve/main/config.json",
            headers={"Range": "bytes=0-3"}, token=READ)
    (e,) = hub.log_since(seq)
    assert e["origin"] == "hub" and e["method"] == "GET"
    assert e["route"] == "resolve" and e["status"] == 206
    assert e["range"] == "bytes=0-3" and e["bytes"] == 4
    assert e["auth"] is True and e["repo"] == "models/tester/model1"
    with open(hub.logfile) as f:
        last = json.loads(f.readlines()[-1])
    assert last["seq"] == e["seq"]


@pytest.mark.parametrize("token", [None, READ, WRITE])
def test_public_reads_work_with_any_valid_token(hub, token):
    r = hub.get("/api/models/tester/model1", token=token)
    assert r.status == 200
