"""Deterministic seeding of the local Hub's repositories.

Everything generated here depends only on the arguments (and the seed):
commit dates start at a fixed epoch and advance one hour per commit, the
author is fixed and the data comes from a seeded generator, so the same
command always produces the same commit ids and bytes.
"""

import hashlib
import json
import os
import random
import struct

from lh_store import GitAttributes, lfs_pointer, default_gitattributes

EPOCH = 1704067200          # 2024-01-01T00:00:00Z
AUTHOR = ("localhub-seed", "seed@localhub.invalid")
MiB = 1 << 20


class Clock:
    def __init__(self, start=EPOCH):
        self.t = start

    def tick(self):
        self.t += 3600
        return self.t


def data_stream(seed, size, chunk=4 * MiB):
    """Seeded pseudo-random bytes, produced chunk by chunk."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def get_or_create(store, rtype, ns, name, private=False, gated=False,
                  clock=None):
    repo = store.get_repo(rtype, ns, name)
    if repo is None:
        repo = store.create_repo(rtype, ns, name, private=private, gated=gated,
                                 author=AUTHOR, when=(clock or Clock()).t)
    return repo


def parse_repo_key(key):
    parts = key.split("/")
    if len(parts) == 2:
        return ("model",) + tuple(parts)
    if len(parts) == 3 and parts[0] in ("models", "datasets", "spaces"):
        return (parts[0][:-1], parts[1], parts[2])
    raise ValueError("repo must be [models/|datasets/|spaces/]NS/NAME: %r" % key)


class Committer:
    """Accumulates file operations and turns them into one commit, storing
    LFS-tracked content in the LFS store and a pointer in git."""

    def __init__(self, store, repo, branch="main"):
        self.store = store
        self.repo = repo
        self.ref = "refs/heads/" + branch
        head = repo.refs().get(self.ref)
        self.attrs = repo.gitattributes(head) if head else GitAttributes(
            default_gitattributes(repo.type))
        self.ops = []

    def add_bytes(self, path, data):
        if path == ".gitattributes":
            self.attrs = GitAttributes(data.decode())
        if data and self.attrs.is_lfs(path):
            oid = self.store.lfs_put_bytes(data)
            data = lfs_pointer(oid, len(data))
        self.ops.append(("add", path, data))

    def add_stream(self, path, chunks):
        """Add an LFS file from an iterator of chunks, without holding it
        in memory."""
        f, tmp = self.store.lfs_tmpfile()
        sha = hashlib.sha256()
        n = 0
        with f:
            for c in chunks:
                sha.update(c)
                f.write(c)
                n += len(c)
        oid = sha.hexdigest()
        if self.store.lfs_has(oid, n):
            os.unlink(tmp)
        else:
            self.store.lfs_commit_file(tmp, oid)
        self.ops.append(("add", path, lfs_pointer(oid, n)))
        return oid

    def delete(self, path):
        self.ops.append(("delete", path))

    def commit(self, message, clock):
        head = self.repo.refs().get(self.ref)
        with self.repo.lock:
            new = self.repo.make_commit(self.ref, head, self.ops, message,
                                        AUTHOR, when=clock.tick(), old=head)
        self.ops = []
        return new


def seed_dir(store, key, src, branch="main", message=None, tag=None,
             private=False):
    """Commit the content of a local directory (one commit)."""
    rtype, ns, name = parse_repo_key(key)
    clock = Clock()
    repo = get_or_create(store, rtype, ns, name, private=private, clock=clock)
    head = repo.refs().get("refs/heads/" + branch)
    if head:
        clock.t = max(clock.t, repo.commit_info(head)["time"])
    c = Committer(store, repo, branch)
    ga = os.path.join(src, ".gitattributes")
    if os.path.exists(ga):
        with open(ga, "rb") as f:
            c.add_bytes(".gitattributes", f.read())
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for fn in sorted(files):
            full = os.path.join(root, fn)
            rel = os.path.relpath(full, src).replace(os.sep, "/")
            if rel == ".gitattributes":
                continue
            if c.attrs.is_lfs(rel) and os.path.getsize(full) > 0:
                with open(full, "rb") as f:
                    c.add_stream(rel, iter(lambda: f.read(4 * MiB), b""))
            else:
                with open(full, "rb") as f:
                    c.add_bytes(rel, f.read())
    sha = c.commit(message or "Upload %s" % os.path.basename(
        os.path.abspath(src)), clock)
    if tag:
        repo.update_ref("refs/tags/" + tag, sha, None)
    return sha


# --- synthetic models -------------------------------------------------------

def safetensors_shard(seed, size, shard_index):
    """A valid safetensors file of exactly `size` bytes: F16 matrices of
    seeded data, with a U8 tensor absorbing the remainder.  Returns (header
    bytes, tensor names, data size)."""
    tensors = {}
    names = []
    budget_guess = size - 4096
    if budget_guess <= 0:
        raise ValueError("shard size must be at least 8 KiB")
    off = 0
    i = 0
    mat = 256 * 1024 * 2        # 256x1024 F16 = 512 KiB per tensor
    while off + mat <= budget_guess - 64:
        name = "model.layers.%d.mlp.shard%d_%d.weight" % (i, shard_index, i)
        tensors[name] = {"dtype": "F16", "shape": [256, 1024],
                         "data_offsets": [off, off + mat]}
        names.append(name)
        off += mat
        i += 1
    # The header length depends on the remainder tensor and vice versa:
    # iterate to a fixed point (it converges in a couple of rounds).
    rest_name = "model.shard%d.tail" % shard_index
    rest = 0
    for _ in range(10):
        tensors[rest_name] = {"dtype": "U8", "shape": [rest],
                              "data_offsets": [off, off + rest]}
        meta = {"__metadata__": {"format": "pt"}}
        meta.update(tensors)
        hdr = json.dumps(meta, separators=(",", ":")).encode()
        hdr += b" " * ((8 - len(hdr) % 8) % 8)
        new_rest = size - 8 - len(hdr) - off
        if new_rest == rest:
            break
        rest = max(0, new_rest)
    else:
        raise ValueError("could not lay out a shard of %d bytes" % size)
    names.append(rest_name)
    return struct.pack("<Q", len(hdr)) + hdr, names, off + rest


def model_card(name):
    return ("---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n"
            "- synthetic\n---\n\n# %s\n\nA synthetic model generated by "
            "localhub for tests and benchmarks.  Its weights are seeded "
            "random data.\n" % name).encode()


def seed_model(store, key, shards=2, shard_size=4 * MiB, seed=0, history=True,
               private=False, gated=False):
    """A synthetic transformers-style model repo.  With history: several
    commits, tags v1.0 and v2.0, branches dev and feature/x, and refs/pr/1."""
    rtype, ns, name = parse_repo_key(key)
    clock = Clock()
    repo = get_or_create(store, rtype, ns, name, private, gated, clock)
    c = Committer(store, repo)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": 1024, "num_hidden_layers": shards * 4,
              "vocab_size": 32000, "torch_dtype": "float16"}
    c.add_bytes("config.json", json.dumps(config, indent=2).encode() + b"\n")
    c.add_bytes("README.md", model_card(repo.id))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    rng = random.Random(seed)
    for i in range(3, 2000):
        vocab["tok%d_%d" % (i, rng.randrange(1 << 20))] = i
    c.add_bytes("tokenizer.json", json.dumps(
        {"version": "1.0", "model": {"type": "BPE", "vocab": vocab}},
        indent=1).encode())
    c.add_bytes("tokenizer_config.json", b'{"model_max_length": 2048}\n')
    c.add_bytes("special_tokens_map.json",
                b'{"bos_token": "<s>", "eos_token": "</s>"}\n')
    first = c.commit("Add config and tokenizer", clock)
    weight_map = {}
    total = 0
    for s in range(shards):
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        hdr, names, dsize = safetensors_shard(seed, shard_size, s)
        for n in names:
            weight_map[n] = fname
        total += dsize
        c.add_stream(fname, _chain([hdr], data_stream(
            (seed, s, "shard").__repr__(), dsize)))
    c.add_bytes("model.safetensors.index.json", json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map},
        indent=2, sort_keys=True).encode() + b"\n")
    second = c.commit("Add weights", clock)
    if not history:
        return {"main": second}
    repo.update_ref("refs/tags/v1.0", second, None)
    c.add_bytes("generation_config.json", b'{"max_new_tokens": 256}\n')
    config["use_cache"] = True
    c.add_bytes("config.json", json.dumps(config, indent=2).encode() + b"\n")
    c.add_bytes("notes/changes with spaces #1.md",
                "Ünïcode and spaces in a file name.\n".encode())
    third = c.commit("Update config", clock)
    repo.update_ref("refs/tags/v2.0", third, None)
    repo.update_ref("refs/heads/dev", first, None)
    d = Committer(store, repo, "dev")
    d.add_bytes("dev-only.txt", b"only on the dev branch\n")
    d.add_bytes("extra/weights.bin", bytes(random.Random(seed + 7).randbytes(
        200000)))
    dev = d.commit("Dev work", clock)
    repo.update_ref("refs/heads/feature/x", third, None)
    fx = Committer(store, repo, "feature/x")
    fx.add_bytes("feature.txt", b"feature branch file\n")
    feat = fx.commit("Feature work", clock)
    repo.update_ref("refs/pr/1", third, None)
    pr = Committer(store, repo, "main")
    pr.ref = "refs/pr/1"
    pr.add_bytes("README.md", model_card(repo.id) + b"\nProposed change.\n")
    prc = pr.commit("Proposed README change", clock)
    repo.set_meta(pr_counter=1)
    return {"initial": repo.log(first, 1, 1)[0]["id"], "first": first,
            "v1.0": second, "main": third, "v2.0": third, "dev": dev,
            "feature/x": feat, "refs/pr/1": prc}


def _chain(*iters):
    for it in iters:
        yield from it


# --- synthetic datasets ------------------------------------------------------

def seed_dataset(store, key, files=1000, seed=0, per_dir=100, lfs_every=0,
                 lfs_size=64 * 1024, private=False):
    """A dataset repo of `files` small text files in nested directories
    (data/DDD/EE/row-NNNNNNN.jsonl), plus an LFS parquet-like file every
    `lfs_every` files (0: none)."""
    rtype, ns, name = parse_repo_key(key)
    if rtype != "dataset":
        raise ValueError("seed-dataset wants a datasets/NS/NAME repo")
    clock = Clock()
    repo = get_or_create(store, rtype, ns, name, private=private, clock=clock)
    c = Committer(store, repo)
    rng = random.Random(seed)
    c.add_bytes("README.md", ("---\nlicense: cc0-1.0\n---\n# %s\n\nSynthetic "
                              "dataset of %d files.\n" % (repo.id, files)).encode())
    for i in range(files):
        d1, d2 = i // (per_dir * 10), (i // per_dir) % 10
        path = "data/%03d/%02d/row-%07d.jsonl" % (d1, d2, i)
        n = rng.randrange(1, 4)
        rows = "".join(json.dumps({"id": i * 10 + k, "text": "sample %d-%d %x" % (
            i, k, rng.getrandbits(64))}) + "\n" for k in range(n))
        c.add_bytes(path, rows.encode())
        if lfs_every and i % lfs_every == 0:
            c.add_bytes("data/%03d/%02d/part-%07d.parquet" % (d1, d2, i),
                        b"PAR1" + rng.randbytes(lfs_size - 8) + b"PAR1")
    sha = c.commit("Add %d files" % files, clock)
    return {"main": sha}


def seed_space(store, key, seed=0):
    rtype, ns, name = parse_repo_key(key)
    if rtype != "space":
        raise ValueError("seed-space wants a spaces/NS/NAME repo")
    clock = Clock()
    repo = store.get_repo(rtype, ns, name) or store.create_repo(
        rtype, ns, name, author=AUTHOR, when=clock.t, sdk="static")
    c = Committer(store, repo)
    c.add_bytes("README.md", b"---\ntitle: Demo\nsdk: static\n---\n")
    c.add_bytes("index.html", b"<!doctype html><title>demo</title><p>hi</p>\n")
    c.add_bytes("assets/model.bin", random.Random(seed).randbytes(5000))
    return {"main": c.commit("Add space files", clock)}
