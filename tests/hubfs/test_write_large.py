"""A training checkpoint copied into the mount: several GiB of shards and
small JSON files, `cp -r` then `sync`, read back by a second mount.

HUBFS_CHECKPOINT_MIB sets the total size of the shards (default 3072)."""

import hashlib
import json
import os
import subprocess
import time

from conftest import READ, WRITE
from writeutil import commits, head, repo, tree

assert repo	# a fixture, used by name

MiB = 1 << 20


def make_checkpoint(d, total_mib):
    """Shards of unique content and a few JSON files; returns
    {relative path: sha256}."""
    os.makedirs(os.path.join(d, "optimizer"))
    want = {}
    nshards = 3
    per = total_mib // nshards * MiB
    block = os.urandom(16 * MiB)
    for i in range(nshards):
        name = "model-%05d-of-%05d.safetensors" % (i + 1, nshards)
        h = hashlib.sha256()
        with open(os.path.join(d, name), "wb") as f:
            for off in range(0, per, len(block)):
                chunk = b"%d:%d|" % (i, off) + block[:min(len(block),
                                                          per - off) - 20]
                chunk += b"\0" * (min(len(block), per - off) - len(chunk))
                f.write(chunk)
                h.update(chunk)
        want[name] = h.hexdigest()
    small = {
        "config.json": {"model_type": "llama", "hidden_size": 4096},
        "model.safetensors.index.json": {"weight_map": {"a": "x"}},
        "trainer_state.json": {"global_step": 100},
        "optimizer/state.json": {"lr": 1e-4},
    }
    for name, obj in small.items():
        data = json.dumps(obj, indent=2).encode() + b"\n"
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        want[name] = hashlib.sha256(data).hexdigest()
    return want


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(8 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def test_cp_r_of_a_checkpoint_then_sync(hub, repo, mount_factory, tmp_path):
    total = int(os.environ.get("HUBFS_CHECKPOINT_MIB", "3072"))
    src = str(tmp_path / "step-100")
    os.mkdir(src)
    want = make_checkpoint(src, total)
    before = tree(hub, repo)
    n0 = len(commits(hub, repo))
    m = mount_factory(hub, repo, token=WRITE)
    os.mkdir(m.path("checkpoints"))
    t0 = time.time()
    subprocess.run(["cp", "-r", src, m.path("checkpoints")], check=True)
    subprocess.run(["sync", m.mnt], check=True)
    elapsed = time.time() - t0
    # The new commits hold exactly the copied files, with their bytes.
    after = tree(hub, repo)
    added = {p for p in after if p not in before}
    assert added == {"checkpoints/step-100/" + p for p in want}
    for p, e in before.items():
        if p != ".gitattributes":
            assert after[p]["oid"] == e["oid"], p
    for p, sha in want.items():
        e = after["checkpoints/step-100/" + p]
        if p.endswith(".safetensors"):
            assert e["lfs"]["oid"] == sha, p
    # Copying takes some seconds; at most a few commits, never one per
    # file.
    assert 1 <= len(commits(hub, repo)) - n0 <= 3
    print("cp -r + sync of %d MiB: %.1f s" % (total, elapsed))
    # A second mount, with a cache of its own, reads back the same bytes.
    m2 = mount_factory(hub, repo, token=READ)
    assert os.getxattr(m2.mnt, "user.hubfs.commit").decode() == \
        head(hub, repo)
    for p, sha in want.items():
        assert sha256_file(m2.path("checkpoints", "step-100", p)) == sha, p
