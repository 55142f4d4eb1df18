#!/usr/bin/python3
"""localhub: a local Hugging Face Hub server for tests, demos and
benchmarks.  See docs/localhub.md for the full command line."""

import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lh_app import App  # noqa: E402
from lh_auth import Auth  # noqa: E402
from lh_store import Store, StoreError  # noqa: E402
import lh_seed  # noqa: E402

UNITS = {"": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20,
         "mb": 1000 ** 2, "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3,
         "gib": 1 << 30}


def size_arg(text):
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(num):]
    if unit not in UNITS or not num:
        raise argparse.ArgumentTypeError("bad size %r (e.g. 512, 4MiB, 1G)" % text)
    return int(float(num) * UNITS[unit])


def cmd_serve(a):
    auth = Auth.from_file(a.config)
    app = App(a.data, auth=auth, page_size=a.page_size,
              url_lifetime=a.url_lifetime,
              multipart_threshold=a.multipart_threshold,
              multipart_chunk=a.multipart_chunk,
              resolve_cache_redirect=a.resolve_cache_redirect,
              request_log=a.request_log)
    for spec in a.fault or []:
        app.faults.add(json.loads(spec))
    if a.rate_limit:
        app.ratelimit.configure(a.rate_limit, a.rate_window)
    app.uplink.rate = a.upload_rate
    info = app.start(a.host, a.port, a.cdn_host, a.cdn_port, a.admin_port)
    line = json.dumps(info)
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, a.ready_file)
    print("localhub ready: hub %s cdn %s admin %s" % (
        info["hub"], info["cdn"], info["admin"]), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    app.stop()
    return 0


def cmd_create(a):
    rtype, ns, name = lh_seed.parse_repo_key(a.repo)
    Store(a.data).create_repo(rtype, ns, name, private=a.private,
                              gated=a.gated or False)
    return 0


def cmd_seed_dir(a):
    sha = lh_seed.seed_dir(Store(a.data), a.repo, a.dir, branch=a.branch,
                           message=a.message, tag=a.tag, private=a.private)
    print(json.dumps({"main" if a.branch == "main" else a.branch: sha}))
    return 0


def cmd_seed_model(a):
    out = lh_seed.seed_model(Store(a.data), a.repo, shards=a.shards,
                             shard_size=a.shard_size, seed=a.seed,
                             history=not a.no_history, private=a.private,
                             gated=a.gated or False)
    print(json.dumps(out))
    return 0


def cmd_seed_dataset(a):
    out = lh_seed.seed_dataset(Store(a.data), a.repo, files=a.files,
                               seed=a.seed, per_dir=a.per_dir,
                               lfs_every=a.lfs_every, private=a.private)
    print(json.dumps(out))
    return 0


def cmd_seed_space(a):
    print(json.dumps(lh_seed.seed_space(Store(a.data), a.repo, seed=a.seed)))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="localhub", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--data", required=True, help="data directory")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=18080, help="hub port (0: any)")
    s.add_argument("--cdn-host", default="127.0.0.1")
    s.add_argument("--cdn-port", type=int, default=0)
    s.add_argument("--admin-port", type=int, default=0)
    s.add_argument("--config", help="users and tokens (JSON)")
    s.add_argument("--page-size", type=int, default=1000,
                   help="tree listing page size (default 1000)")
    s.add_argument("--url-lifetime", type=int, default=3600,
                   help="lifetime of signed CDN URLs, seconds")
    s.add_argument("--multipart-threshold", type=size_arg, default="64MiB")
    s.add_argument("--multipart-chunk", type=size_arg, default="16MiB")
    s.add_argument("--resolve-cache-redirect", action="store_true",
                   help="answer /resolve/ of regular files of public repos "
                        "with a relative 307 to /api/resolve-cache/")
    s.add_argument("--request-log", help="append JSON lines here")
    s.add_argument("--ready-file", help="write the origins' URLs here when "
                                        "listening")
    s.add_argument("--fault", action="append", help="a fault rule (JSON)")
    s.add_argument("--rate-limit", type=int, help="requests per window and "
                                                  "bucket")
    s.add_argument("--rate-window", type=int, default=300)
    s.add_argument("--upload-rate", type=size_arg, default="0",
                   help="bytes per second that all uploads to the CDN "
                   "share, like one network link (0: no limit)")
    s.set_defaults(fn=cmd_serve)

    def repo_cmd(name, fn, help):
        c = sub.add_parser(name, help=help)
        c.add_argument("--data", required=True)
        c.add_argument("repo", help="[models/|datasets/|spaces/]NS/NAME")
        c.add_argument("--private", action="store_true")
        c.set_defaults(fn=fn)
        return c

    c = repo_cmd("create-repo", cmd_create, "create an empty repo")
    c.add_argument("--gated", choices=["auto", "manual"])
    c = repo_cmd("seed-dir", cmd_seed_dir, "commit a local directory")
    c.add_argument("dir")
    c.add_argument("--branch", default="main")
    c.add_argument("--message")
    c.add_argument("--tag")
    c = repo_cmd("seed-model", cmd_seed_model, "generate a model repo")
    c.add_argument("--shards", type=int, default=2)
    c.add_argument("--shard-size", type=size_arg, default="4MiB")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-history", action="store_true")
    c.add_argument("--gated", choices=["auto", "manual"])
    c = repo_cmd("seed-dataset", cmd_seed_dataset, "generate a dataset repo")
    c.add_argument("--files", type=int, default=1000)
    c.add_argument("--per-dir", type=int, default=100)
    c.add_argument("--lfs-every", type=int, default=0)
    c.add_argument("--seed", type=int, default=0)
    c = repo_cmd("seed-space", cmd_seed_space, "generate a space repo")
    c.add_argument("--seed", type=int, default=0)

    a = p.parse_args(argv)
    try:
        return a.fn(a)
    except (StoreError, ValueError, OSError) as e:
        print("localhub: %s" % (getattr(e, "message", None) or e),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
