"""A by-hand A/B of the checkpoint write (S8): two or more hubfs binaries
take turns copying a new checkpoint (4 x 256 MiB of random bytes and a
config.json) into a fresh writable mount with `cp -r`, then `sync DIR`.
Prints each copy's times and the local Hub's upload calls, in seconds
from the start of the copy.

    /usr/bin/python3 tests/bench/ckpt_ab.py --pairs 3 \\
        --upload-rate 125MB before=/path/to/old/hubfs after=build/hubfs

--upload-rate limits every upload to the local Hub to one shared rate
(0: loopback speed).  Needs root and FUSE; writes under --work-dir."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                ".."))
import conftest  # noqa: E402

MiB = 1 << 20
CALLS = ("preupload", "lfs-batch", "lfs-complete", "commit")


def make_checkpoint(d, tag):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for i in range(4):
        with open(os.path.join(d, "model-%05d.safetensors" % i), "wb") as f:
            for _ in range(16):
                f.write(os.urandom(16 * MiB))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"tag": tag}, f)
    subprocess.run("cat %s/* > /dev/null" % d, shell=True, check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("binaries", nargs="+", help="NAME=PATH of a hubfs")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--upload-rate", default="0")
    p.add_argument("--work-dir", default="/tmp/hubfs-ckpt-ab")
    a = p.parse_args()
    work = a.work_dir
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    hub = conftest.LocalHub(work, ["--upload-rate", a.upload_rate,
                                   "--multipart-threshold", "64MiB",
                                   "--multipart-chunk", "16MiB"])
    hub.seed("seed-model", "tester/ckpt", "--shards", "1", "--shard-size",
             "1MiB", "--no-history")
    hub.start()
    src = os.path.join(work, "ckpt")
    try:
        for pair in range(a.pairs):
            for b in a.binaries:
                name, path = b.split("=", 1)
                conftest.HUBFS = path
                make_checkpoint(src, "%s-%d" % (name, pair))
                d = os.path.join(work, "m-%s-%d" % (name, pair))
                os.makedirs(d)
                m = conftest.Mount(d, "tester/ckpt", hub.url,
                                   ["commit_delay=600000"],
                                   token=conftest.WRITE).start()
                dest = m.path("ckpt-%s-%d" % (name, pair))
                try:
                    seq = hub.mark()
                    t0 = time.time()
                    subprocess.run(["cp", "-r", src, dest], check=True)
                    t1 = time.time()
                    subprocess.run(["sync", dest], check=True)
                    t2 = time.time()
                    log = hub.log_since(seq)
                finally:
                    m.stop()
                print("%s, pair %d: cp %.2f s, sync %.2f s, total %.2f s, "
                      "%d requests" % (name, pair, t1 - t0, t2 - t1,
                                       t2 - t0, len(log)))
                for e in log:
                    if e["route"] in CALLS:
                        print("  %6.2f s  %-12s %5.0f ms" % (
                            e["ts"] - t0, e["route"], e["ms"]))
                sys.stdout.flush()
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
