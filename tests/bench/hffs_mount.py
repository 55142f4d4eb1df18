"""huggingface_hub's HfFileSystem mounted through fsspec.fuse (fusepy), as
a peer in the benchmarks.  It runs only where those modules are installed
(bench.py checks first); the suite itself needs none of them.

Usage: HF_TOKEN=... python3 hffs_mount.py HUB_URL REPO MOUNTPOINT
REPO is NS/NAME for a model, datasets/NS/NAME for a dataset.  Stays in the
foreground until the mount point is unmounted (fusermount3 -u).
"""

import os
import sys


def main():
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    endpoint, repo, mnt = sys.argv[1:]
    from fsspec.fuse import run
    from huggingface_hub import HfFileSystem
    fs = HfFileSystem(endpoint=endpoint.rstrip("/"),
                      token=os.environ.get("HF_TOKEN") or False)
    run(fs, repo.rstrip("/") + "/", mnt, foreground=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
