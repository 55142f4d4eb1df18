"""Helpers shared by the write-path tests: a fresh repo per test, the git
and JavaScript-client oracles, and small file operations."""

import hashlib
import json
import os
import re
import subprocess
import time

import pytest

from conftest import ROOT, WRITE, Git

SHARD1 = "model-00001-of-00002.safetensors"
JS_REPO_TOOL = os.path.join(ROOT, "tests", "js", "repo.mjs")


@pytest.fixture
def repo(hub, request):
    """A fresh model repo per test, seeded with a model."""
    words = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")
    tag = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
    name = "tester/w-%s-%s" % (words[5:45].strip("-"), tag)
    hub.seed("seed-model", name, "--shards", "2", "--shard-size", "3MiB",
             "--no-history")
    return name


@pytest.fixture
def no_faults(hub):
    """No fault rule on the server before and after the test."""
    hub.admin("DELETE", "/faults")
    yield
    hub.admin("DELETE", "/faults")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB file system, for a cache directory that fills up."""
    d = tmp_path / "small"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs",
                    str(d)], check=True)
    yield str(d)
    subprocess.run(["umount", "-l", str(d)])


@pytest.fixture
def git(tmp_path):
    g = Git(str(tmp_path / "githome"))
    g.run("lfs", "install", "--skip-repo")
    return g


def head(hub, repo):
    return hub.get("/api/models/%s/revision/main" % repo).json()["sha"]


def commits(hub, repo):
    return hub.get("/api/models/%s/commits/main" % repo).json()


def tree(hub, repo, rev="main"):
    """{path: entry} of every file at rev."""
    r = hub.get("/api/models/%s/tree/%s?recursive=true" % (repo, rev))
    assert r.status == 200, r
    return {e["path"]: e for e in r.json() if e["type"] == "file"}


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


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def final_metric(path, name):
    """Metric hubfs_NAME from a metrics file hubfs wrote (metrics_file=):
    exactly one sample of it."""
    with open(path) as f:
        found = [line for line in f
                 if line.startswith("hubfs_" + name + "{")]
    assert len(found) == 1, (name, found)
    return float(found[0].rsplit(" ", 1)[1])


def staged_inodes(cache_dir):
    """Inode numbers of the staged files under a mount's cache.  A file
    the mount removes while it is being listed is left out."""
    top = os.path.join(cache_dir, "staging")
    found = set()
    for d in os.listdir(top):
        try:
            names = os.listdir(os.path.join(top, d))
        except FileNotFoundError:
            continue
        for f in names:
            if len(f) != 32:
                continue
            try:
                found.add(os.stat(os.path.join(top, d, f)).st_ino)
            except FileNotFoundError:
                pass
    return found


def wait_for(cond, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def js(js_dir, hub, *args, token=WRITE):
    """Run the official client's repo tool; its stdout (stripped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_TOKEN"] = token
    p = subprocess.run(["node", JS_REPO_TOOL, args[0], hub.url] +
                       list(args[1:]), cwd=js_dir, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode().strip()


def js_show(js_dir, hub, repo, rev="main"):
    return json.loads(js(js_dir, hub, "show", repo, rev))


def js_commit(js_dir, hub, repo, title, tmp_path, files, deletes=()):
    """Commit {path: bytes} (and deletions) with the official client."""
    specs = []
    for i, (path, data) in enumerate(sorted(files.items())):
        local = tmp_path / ("js-upload-%d" % i)
        local.write_bytes(data)
        specs.append("%s=%s" % (path, local))
    specs += ["-" + p for p in deletes]
    return js(js_dir, hub, "commit", repo, "main", title, *specs)
