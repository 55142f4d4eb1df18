"""Conformance of the local Hub with a client nobody here wrote: the official
JavaScript client @huggingface/hub (pinned in tests/js/package.json) runs
tests/js/conformance.mjs against a fresh server, and the server's request
log is checked afterwards (CDN parts, completion, no token on the CDN)."""

import collections
import json
import math
import os
import shutil
import subprocess
import uuid

import pytest

from conftest import WRITE, READ

NODE = shutil.which("node")
TIMEOUT = 240

PAGE_SIZE = 3
CHUNK = 256 * 1024
SERVER_FLAGS = ["--page-size", str(PAGE_SIZE), "--multipart-threshold", "1MiB",
                "--multipart-chunk", "256KiB"]

BIG = round(1.3 * 1024 * 1024)        # data/multipart.bin and data/edited.bin
EDITED = BIG - 10 + 6 - 10            # two splices: 10 -> 6 bytes, 10 -> 0

# Files on main at the end of each scenario.
COMMON_FILES = [
    ".gitattributes", "a/b/c.txt", "a/d.txt", "copy/dup.bin",
    "data/edited.bin", "data/multipart.bin", "data/small-edited.bin",
    "data/small.bin", "docs/0.txt", "docs/1.txt", "docs/2.txt", "docs/3.txt",
    "docs/4.txt", "fresh.txt", "spaced dir/na\u00efve file+1.txt"]
EXPECTED = {
    # private model: the URL-content upload is refused (fetched anonymously)
    "model": {"files": sorted(COMMON_FILES), "commits_by_run": 10,
              "private": True},
    "dataset": {"files": sorted(COMMON_FILES + ["copy/from-url.bin"]),
                "commits_by_run": 11, "private": False},
}
STEPS = [
    "whoAmI", "createRepo", "countCommits(initial)", "uploadFile(regular)",
    "uploadFile(lfs)", "uploadFiles(multipart)", "uploadFile(lfs dedup)",
    "commit(edit, URL content)", "commit(add+delete)", "deleteFile/deleteFiles",
    "commit(stale parentCommit)", "{t}Info", "listFiles(recursive)",
    "listFiles(non-recursive, path, expand)", "pathsInfo", "fileExists",
    "fileDownloadInfo", "downloadFile", "downloadFileToCacheDir",
    "snapshotDownload(main)", "createBranch", "uploadFiles(branch)",
    "listCommits/countCommits", "snapshotDownload(dev)",
    "commit(pull request)", "deleteBranch"]


def dirs_of(files):
    out = set()
    for f in files:
        parts = f.split("/")
        for i in range(1, len(parts)):
            out.add("/".join(parts[:i]))
    return out


def run_js(js_dir, tmp_path, scenario, hub, repo, token=WRITE, extra_env=None):
    assert NODE, "node (>= 18) must be on PATH"
    env = dict(os.environ)
    env.update({"HF_TOKEN": token, "EXPECT_USER": "alice",
                "PAGE_SIZE": str(PAGE_SIZE), "MULTIPART_CHUNK": str(CHUNK),
                "JS_CACHE_DIR": str(tmp_path / ("cache-" + scenario)),
                "HF_HOME": str(tmp_path / "hf-home")})
    env.pop("HF_ENDPOINT", None)
    env.update(extra_env or {})
    p = subprocess.run([NODE, "conformance.mjs", scenario, hub.url, repo],
                       cwd=js_dir, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=TIMEOUT)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    failure = "\n".join(l for l in err.splitlines()
                        if not l.startswith("Downloading "))
    return p.returncode, out, failure


def summary_of(out):
    lines = [l for l in out.splitlines() if l.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


def started(localhub_factory, *flags):
    return localhub_factory(*flags).start()


@pytest.mark.parametrize("scenario", ["model", "dataset"])
def test_official_js_client(js_client_dir, localhub_factory, tmp_path,
                            scenario):
    hub = started(localhub_factory, *SERVER_FLAGS)
    name = "tester/js-%s-%s" % (scenario, uuid.uuid4().hex[:8])
    prefix = "" if scenario == "model" else "datasets/"
    exp = EXPECTED[scenario]
    seq = hub.mark()

    rc, out, err = run_js(js_client_dir, tmp_path, scenario, hub, name)
    assert rc == 0, "conformance.mjs failed:\n%s\n%s" % (err, out[-2000:])
    s = summary_of(out)

    # --- the client's own view ------------------------------------------
    assert s["ok"] is True
    assert s["scenario"] == scenario
    assert s["user"] == "alice"
    assert s["repo"] == "%ss/%s" % (scenario, name)
    assert s["private"] is exp["private"]
    assert s["steps"] == [x.replace("{t}", scenario) for x in STEPS]
    assert s["files"] == exp["files"]
    assert s["commitsByRun"] == exp["commits_by_run"]
    # initial commit + the createRepo files commit + this run's commits;
    # dev has one more, the PR commit is on refs/pr/1 only.
    assert s["commits"] == {"main": 2 + exp["commits_by_run"],
                            "dev": 3 + exp["commits_by_run"]}
    assert s["pullRequest"] == "refs/pr/1"
    entries = len(exp["files"]) + len(dirs_of(exp["files"]))
    assert s["treeEntries"] == entries
    assert s["treePages"] == math.ceil(entries / PAGE_SIZE)
    assert s["multipart"]["chunk"] == CHUNK
    assert s["multipart"]["size"] == BIG
    assert s["multipart"]["parts"] == math.ceil(BIG / CHUNK) == 6
    assert s["requests"]["withAuthToOtherOrigins"] == 0
    assert s["checks"] > 300

    # --- the server's view of the repo ----------------------------------
    api = "/api/%ss/%s" % (scenario, name)
    r = hub.get(api + "/revision/main", token=WRITE)
    assert r.status == 200, r
    assert r.json()["sha"] == s["mainSha"]
    assert r.json()["private"] is exp["private"]
    tree, url = [], api + "/tree/main?recursive=true&limit=1000"
    while url:      # --page-size 3 caps even limit=1000
        r = hub.get(url, token=WRITE)
        assert r.status == 200, r
        tree += r.json()
        link = r.header("Link")
        url = link[1:link.index(">")] if link else None
    assert sorted(e["path"] for e in tree if e["type"] == "file") == \
        exp["files"]
    big = [e for e in tree if e["path"] == "data/multipart.bin"][0]
    assert big["lfs"] == {"oid": s["multipart"]["oid"], "size": BIG,
                          "pointerSize": big["lfs"]["pointerSize"]}
    edited = [e for e in tree if e["path"] == "data/edited.bin"][0]
    assert edited["lfs"]["size"] == EDITED
    r = hub.get(api + "/commits/main?limit=1", token=WRITE)
    assert r.header("X-Total-Count") == str(s["commits"]["main"])
    refs = hub.get(api + "/refs?include_prs=1", token=WRITE).json()
    assert [b["name"] for b in refs["branches"]] == ["main"]
    assert [p["name"] for p in refs["pullRequests"]] == ["refs/pr/1"]
    if exp["private"]:
        assert hub.get(api + "/revision/main").status == 401

    # --- the request log ------------------------------------------------
    log = hub.log_since(seq)
    assert log, "empty request log"
    assert [e for e in log if e["status"] is None or e["status"] >= 500] == []
    cdn = [e for e in log if e["origin"] == "cdn"]
    # The token never reaches the CDN origin, and nothing was refused there.
    assert [e for e in cdn if e["auth"]] == []
    assert hub.leaks() == []
    assert [e for e in cdn if e["status"] not in (200, 206)] == []
    routes = collections.Counter((e["route"], e["method"]) for e in cdn)
    # multipart.bin and edited.bin: 6 parts each; basic PUTs: small.bin,
    # small-edited.bin, dev/blob.bin (dup.bin and from-url.bin dedup).
    assert routes[("cdn-part", "PUT")] == 12
    assert routes[("cdn-put", "PUT")] == 3
    parts = sorted(e["path"] for e in cdn if e["route"] == "cdn-part"
                   and s["multipart"]["oid"] in e["path"])
    assert parts == ["/upload/%s/part/%d" % (s["multipart"]["oid"], i)
                     for i in range(1, 7)]
    completes = [e for e in log if e["route"] == "lfs-complete"]
    assert [(e["method"], e["status"], e["auth"]) for e in completes] == \
        [("POST", 200, False)] * 2
    repo_path = "/%s%s.git/info/lfs/complete/%s" % (prefix, name,
                                                    s["multipart"]["oid"])
    assert repo_path in [e["path"] for e in completes]
    # Every part PUT of an object precedes its completion.
    last_part = max(e["seq"] for e in cdn if e["route"] == "cdn-part"
                    and s["multipart"]["oid"] in e["path"])
    assert last_part < [e["seq"] for e in completes
                        if e["path"] == repo_path][0]
    # No verify call (the JS client never makes one).
    assert [e for e in log if e["route"] == "lfs-verify"] == []
    # Each CDN GET follows a /resolve/ 302 of an LFS file, one for one.
    redirects = [e for e in log if e["route"] == "resolve"
                 and e["status"] == 302]
    gets = [e for e in cdn if e["route"] == "cdn-get"]
    assert len(redirects) == len(gets) > 0
    assert all(e["auth"] for e in redirects if exp["private"])
    # Ranged slices went to the CDN with their Range header intact.
    ranges = collections.Counter(e["range"] for e in gets)
    for a, b in s["slices"]:
        assert ranges["bytes=%d-%d" % (a, b - 1)] >= 1, (a, b)
    # Anonymous resolve of the private repo: only the URL-content upload.
    anon = [e for e in log if e["route"] == "resolve" and e["status"] == 401]
    assert len(anon) == (1 if exp["private"] else 0)
    # listFiles(recursive) on main followed Link rel="next" page by page.
    pages = [e for e in log if e["route"] == "tree" and e["path"] ==
             "%s/tree/main" % api and "recursive=true" in e.get("query", "")
             and "expand=false" in e.get("query", "")]
    assert len(pages) == s["treePages"]
    assert ["cursor=" in e["query"] for e in pages] == \
        [False] + [True] * (len(pages) - 1)
    # JS listFiles sends a branch with a slash unencoded; it still worked.
    assert any(e["route"] == "tree" and e["status"] == 200 and
               e["path"] == "%s/tree/feat/x/feature" % api for e in log)


def test_script_fails_without_multipart(js_client_dir, localhub_factory,
                                        tmp_path):
    """The script has teeth: a server that never offers multipart fails."""
    hub = started(localhub_factory, "--page-size", str(PAGE_SIZE))
    rc, out, err = run_js(js_client_dir, tmp_path, "model", hub,
                          "tester/js-nomp-%s" % uuid.uuid4().hex[:8])
    assert rc == 1, out
    assert "FAIL: uploadFiles(multipart): the server must offer multipart" \
        in err, err
    assert out.strip() == ""


def test_script_fails_without_pagination(js_client_dir, localhub_factory,
                                         tmp_path):
    """With the default page size listFiles gets everything in one page."""
    hub = started(localhub_factory, "--multipart-threshold", "1MiB",
                  "--multipart-chunk", "256KiB")
    rc, out, err = run_js(js_client_dir, tmp_path, "dataset", hub,
                          "tester/js-nopage-%s" % uuid.uuid4().hex[:8])
    assert rc == 1, out
    assert "FAIL: listFiles(recursive): listFiles must follow Link " \
        'rel="next" (got 1 page(s)' in err, err


def test_script_fails_with_a_read_token(js_client_dir, localhub_factory,
                                        tmp_path):
    hub = started(localhub_factory, *SERVER_FLAGS)
    rc, out, err = run_js(js_client_dir, tmp_path, "model", hub,
                          "tester/js-ro-%s" % uuid.uuid4().hex[:8], token=READ)
    assert rc == 1, out
    assert 'FAIL: whoAmI: token role: expected "write", got "read"' in err, err
