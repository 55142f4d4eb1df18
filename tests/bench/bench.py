#!/usr/bin/python3
"""hubfs benchmark suite.

    tests/bench/run.sh [--smoke] [--runs N] [--out FILE] [options]

Builds hubfs in release mode, compiles the suite's helpers (benchtool.c and
the minimal libfuse passthrough passthrough.c), seeds the local Hub
(tests/localhub) deterministically, runs every scenario --runs times,
interleaved, and writes docs/PERFORMANCE.md (or --out): the machine, every
figure as median and min-max, its baseline measured in the same run, the
ratio, the target and pass or miss, the Hub requests and bytes fetched
(from the local Hub's request log), hubfs's peak RSS, and the exact
commands.  Every read is checked against the seeded bytes; the exit status
is 1 when a check fails or a scenario breaks, whatever the targets say.

Needs root (FUSE mounts, dropping the page cache), fusermount3, curl, git,
cc and pkg-config with libfuse3's headers, and cmake (unless --hubfs names
a built daemon).  Node with tests/js/node_modules enables the
@huggingface/hub peer.  Python: the standard library only.
"""

import argparse
import base64
import collections
import datetime
import glob
import hashlib
import http.client
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(BENCH))
LOCALHUB = os.path.join(ROOT, "tests", "localhub", "localhub.py")
JS_DIR = os.path.join(ROOT, "tests", "js")
PY = "/usr/bin/python3"
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# The local Hub's built-in user "demo" and its tokens (docs/localhub.md).
NS = "demo"
WRITE_TOKEN = "hf_localhub_demo_write"
READ_TOKEN = "hf_localhub_demo_read"
PAGE_SIZE = 1000            # the local Hub's default tree page size

SCENARIOS = [
    ("S1", "Cold sequential read"),
    ("S2", "Re-read while mounted (page cache)"),
    ("S3", "Warm read after remount, page cache dropped"),
    ("S4", "Random reads"),
    ("S5", "Model load (mmap, several processes)"),
    ("S6", "Metadata: find with stat on every entry"),
    ("S7", "Many small files"),
    ("S8", "Write and commit"),
    ("S9", "Peak RSS of hubfs"),
    ("S10", "Scale"),
]

# The variables the recorded commands use, as the report explains them.
VARIABLES = [
    ("$MNT", "the hubfs mount point (a fresh cache directory for every cold run)"),
    ("$PT", "the minimal passthrough's mount point, mirroring $LOCAL"),
    ("$LOCAL", "a local directory holding the same bytes, in the work directory"),
    ("$URL", "the file's /resolve/ URL on the local Hub (302 to its CDN origin)"),
    ("$CDN", "the signed CDN URL /resolve/ redirects to"),
    ("$BT", "the suite's benchtool (tests/bench/benchtool.c)"),
    ("$HUB", "the local Hub's URL"),
    ("$CFG", "a curl config file: one url (and output or range) per file"),
    ("$SRC", "the local source of a write"),
    ("$OUT", "a scratch file or directory"),
    ("$P", "the number of parallel processes or transfers"),
    ("$BYTES", "how much memory `benchtool touch` uses (S10: 2.5 times the "
     "file's size plus 64 MiB, at most the free memory less 512 MiB)"),
    ("$RUN", "the run's number (every write goes to a new path)"),
]


def sizes_for(scale, smoke):
    """Every size from one parameter: the full run is scale 1."""
    def b(full, floor):
        return max(floor, int(full * scale) // MiB * MiB)

    def n(full, floor):
        return max(floor, int(full * scale))
    return {
        "seq": [b(1 * GiB, 4 * MiB), b(4 * GiB, 16 * MiB)],
        "files": [n(10000, 200), n(50000, 500)],
        "rand": {4 * KiB: n(1000, 50), 1 * MiB: n(100, 8)},
        "shards": 4,
        "shard_size": b(512 * MiB, 2 * MiB),
        "procs": 4,
        "write": b(2 * GiB, 8 * MiB),
        "ckpt_files": 4,
        "ckpt_size": b(256 * MiB, 1 * MiB),
        "parallel": 8,
        "multipart_threshold": b(64 * MiB, 1 * MiB),
        "multipart_chunk": b(16 * MiB, 1 * MiB),
    }


def space_needed(sz):
    """Bytes a run needs in its work directory, about: the local Hub's
    copy and the local copy of everything seeded, the write's sources and
    staged bytes, and the caches alive at once (S3 keeps one of the
    largest file while another fills)."""
    seeded = (sum(sz["seq"]) + sz["shards"] * sz["shard_size"] +
              sz["write"] + sz["ckpt_files"] * sz["ckpt_size"])
    return 2 * seeded + 2 * max(sz["seq"]) + 2 * sz["write"] + GiB


class BenchError(Exception):
    pass


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


def human_bytes(n):
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            v = n / size
            return ("%d %s" % (v, unit)) if v == int(v) else ("%.1f %s" % (v, unit))
    return "%d B" % n


def proc_field(path, key):
    """The value of the first "key: value" line of @path starting with
    @key, or "?"."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def busy_cpu_secs():
    """CPU-seconds the whole machine has spent busy so far (all CPUs; idle
    and I/O wait excluded), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / hz


def sha256_cpu_secs(size):
    """CPU-seconds this process takes to SHA-256 @size bytes in memory,
    with the same libcrypto hubfs uses (hashlib is OpenSSL's)."""
    buf = os.urandom(16 * MiB)
    h = hashlib.sha256()
    left = size
    t0 = time.process_time()
    while left > 0:
        n = min(left, len(buf))
        h.update(memoryview(buf)[:n])
        left -= n
    return time.process_time() - t0


def sys_text(path):
    """The stripped contents of a small sysfs file, or None."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def memory_taken_back():
    """How this machine takes memory back from its page cache and its
    free lists, as far as sysfs shows: a balloon that reports free pages
    to the host (pages used for the first time in a while cost a host
    fault), and DAMON schemes that page out memory left idle (a file's
    page cache does not stay put).  Both move the figures; see findings."""
    found = []
    for dev in sorted(glob.glob("/sys/bus/virtio/drivers/virtio_balloon/virtio*")):
        feats = sys_text(os.path.join(dev, "features")) or ""
        if len(feats) > 5 and feats[5] == "1":   # VIRTIO_BALLOON_F_REPORTING
            found.append("free page reporting (virtio-balloon)")
    for ctx in sorted(glob.glob("/sys/kernel/mm/damon/admin/kdamonds/*/contexts/*")):
        if sys_text(ctx.split("/contexts/")[0] + "/state") != "on":
            continue
        try:
            aggr = int(sys_text(ctx + "/monitoring_attrs/intervals/aggr_us"))
        except (TypeError, ValueError):
            continue
        for sch in sorted(glob.glob(ctx + "/schemes/[0-9]*")):
            action = sys_text(sch + "/action")
            try:
                age = int(sys_text(sch + "/access_pattern/age/min"))
            except (TypeError, ValueError):
                continue
            found.append("DAMON %s of memory idle for %g s" % (
                action, age * aggr / 1e6))
    return "; ".join(found) or "none found"


def run_quiet(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          **kw)


# --- The local Hub -------------------------------------------------------------

class LocalHub:
    """tests/localhub/localhub.py serve, with its request log."""

    def __init__(self, workdir, data, extra_args):
        self.workdir = workdir
        self.data = data
        self.ready = os.path.join(workdir, "hub-ready.json")
        self.logfile = os.path.join(workdir, "hub-requests.jsonl")
        self.errfile = os.path.join(workdir, "hub.err")
        self.extra = list(extra_args)
        self.proc = None

    def start(self, timeout=60):
        self.err = open(self.errfile, "ab")
        self.proc = subprocess.Popen(
            [PY, LOCALHUB, "serve", "--data", self.data, "--port", "0",
             "--ready-file", self.ready, "--request-log", self.logfile] +
            self.extra, stdout=subprocess.DEVNULL, stderr=self.err,
            stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None:
                raise BenchError("the local Hub exited with %d" %
                                 self.proc.returncode)
            if time.time() > deadline:
                raise BenchError("the local Hub did not start")
            time.sleep(0.05)
        with open(self.ready) as f:
            info = json.load(f)
        self.url, self.cdn, self.admin = info["hub"], info["cdn"], info["admin"]

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.err.close()

    def _settle(self):
        """The admin log call waits until every request in progress is
        logged; returns the last sequence number."""
        body = http_json("GET", self.admin + "/log?since=999999999999")
        return body["last"]

    def mark(self):
        last = self._settle()
        try:
            off = os.path.getsize(self.logfile)
        except FileNotFoundError:
            off = 0
        return (last, off)

    def since(self, mark):
        last, off = mark
        self._settle()
        out = []
        with open(self.logfile, "rb") as f:
            f.seek(off)
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("seq", 0) > last:
                    out.append(e)
        return out


def http_json(method, url, body=None, headers=None, timeout=60):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, u.path + ("?" + u.query if u.query else ""),
                     body=data, headers=h)
        r = conn.getresponse()
        raw = r.read()
        if r.status >= 300:
            raise BenchError("%s %s: HTTP %d %s" % (method, u.path, r.status,
                                                    raw[:200]))
        return json.loads(raw) if raw else None
    finally:
        conn.close()


def tsample(t):
    """The request-log figures of a sample, from traffic()."""
    return {"requests": t["requests"], "hub_requests": t["hub_requests"],
            "cdn_requests": t["cdn_requests"], "fetched": t["bytes"],
            "routes": t["routes"]}


def traffic(entries):
    """What the request log says about a window of requests."""
    routes = collections.Counter(e.get("route") or "?" for e in entries)
    return {
        "requests": len(entries),
        "hub_requests": sum(1 for e in entries if e["origin"] == "hub"),
        "cdn_requests": sum(1 for e in entries if e["origin"] == "cdn"),
        "bytes": sum(e.get("bytes") or 0 for e in entries),
        "cdn_bytes": sum(e.get("bytes") or 0 for e in entries
                         if e["origin"] == "cdn"),
        "routes": dict(routes),
    }


# --- Mounts --------------------------------------------------------------------

# The CPU of the S4 rows that run the daemon and its reader together.
PIN_CPU = max(os.sched_getaffinity(0))


def pinned(cpu):
    """The argv prefix that runs a command on one CPU (taskset execs it, so
    the pid stays the daemon's)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


class FuseProc:
    """A FUSE daemon run in the foreground by the suite, which owns its pid:
    unmounted with fusermount3 and waited for, even after a failure."""

    def __init__(self, ctx, argv, mnt, env, errfile):
        self.ctx = ctx
        self.argv = argv
        # The daemon's own name, behind any taskset prefix (pinned()).
        self.name = os.path.basename(argv[3] if argv[0] == "taskset"
                                     else argv[0])
        self.mnt = mnt
        self.env = env
        self.errfile = errfile
        self.proc = None
        self.peak_rss = None
        self.mark0 = None

    def __enter__(self):
        os.makedirs(self.mnt, exist_ok=True)
        # The first measurement on a mount counts the mount's requests too.
        if self.ctx.hub is not None and self.ctx.hub.proc is not None:
            self.mark0 = self.ctx.hub.mark()
        self.err = open(self.errfile, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err)
        self.ctx.live.append(self)
        deadline = time.time() + 60
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                self.err.close()
                self.ctx.live.remove(self)
                raise BenchError("%s exited with %d: %s" % (
                    self.name, rc, self.errors()[-2000:]))
            if time.time() > deadline:
                self.stop()
                raise BenchError("%s did not mount" % self.name)
            time.sleep(0.02)
        self.minor = os.minor(os.stat(self.mnt).st_dev)
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def rss(self):
        """VmHWM of the daemon, in bytes (the peak so far)."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        v = int(line.split()[1]) * 1024
                        self.peak_rss = max(self.peak_rss or 0, v)
                        return v
        except (OSError, AttributeError):
            pass
        return self.peak_rss

    def stop(self):
        if self.proc is None:
            return
        self.rss()
        for lazy in (False, False, True):
            p = run_quiet(["fusermount3", "-u"] + (["-z"] if lazy else []) +
                          [self.mnt])
            if p.returncode == 0 or not os.path.ismount(self.mnt):
                break
            time.sleep(0.5)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            try:
                with open("/sys/fs/fuse/connections/%d/abort" % self.minor,
                          "w") as f:
                    f.write("1")
            except OSError:
                pass
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None
        self.err.close()
        if self in self.ctx.live:
            self.ctx.live.remove(self)

    def errors(self):
        try:
            with open(self.errfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


# --- The suite -----------------------------------------------------------------

class Suite:
    def __init__(self, args):
        self.args = args
        self.smoke = args.smoke
        self.runs = args.runs
        self.sz = sizes_for(args.scale, args.smoke)
        self.samples = collections.OrderedDict()   # (sc, label) -> [sample]
        self.commands = collections.OrderedDict()  # (sc, label) -> [cmd]
        self.checks = []          # (sc, label, ok, detail)
        self.errors = []          # (sc, text)
        self.notrun = collections.OrderedDict()    # (sc, label) -> reason
        self.live = []
        self.counter = 0
        self.expected = {}
        self.server_warm = False

    # --- plumbing -------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def fresh(self, kind):
        self.counter += 1
        return self.path("scratch", "%s-%d" % (kind, self.counter))

    def sh(self, cmd, env=None, timeout=3600):
        """Run a recorded command with bash; returns (seconds, stdout)."""
        e = dict(self.base_env)
        e.update(env or {})
        t0 = time.perf_counter()
        p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=e,
                           cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           timeout=timeout)
        secs = time.perf_counter() - t0
        if p.returncode != 0:
            raise BenchError("command failed (%d): %s\n%s" % (
                p.returncode, cmd, p.stderr.decode("utf-8", "replace")[-2000:]))
        return secs, p.stdout.decode("utf-8", "replace")

    def sh_cpu(self, cmd, env=None):
        """sh(), and the CPU-seconds the whole machine was busy meanwhile:
        (seconds, stdout, busy)."""
        b0 = busy_cpu_secs()
        secs, out = self.sh(cmd, env)
        return secs, out, busy_cpu_secs() - b0

    def record(self, sc, label, value, unit, cmd=None, **extra):
        s = dict(extra)
        s["value"] = value
        s["unit"] = unit
        self.samples.setdefault((sc, label), []).append(s)
        if cmd is not None:
            cmds = self.commands.setdefault((sc, label), [])
            for c in (cmd if isinstance(cmd, list) else [cmd]):
                if c not in cmds:
                    cmds.append(c)
        return s

    def check(self, sc, label, ok, detail):
        self.checks.append((sc, label, bool(ok), detail))
        if not ok:
            log("CHECK FAILED: %s %s: %s" % (sc, label, detail))

    def check_read(self, sc, label, path, exp):
        """Hash what a mount serves for path (after the timed read, on the
        same mount: for a FUSE file with keep_cache these are the pages the
        timed read brought in) against the seeded bytes."""
        p = run_quiet([self.bt, "read", path])
        if p.returncode != 0:
            self.check(sc, label, False, p.stderr.decode("utf-8", "replace"))
            return
        out = json.loads(p.stdout)
        ok = out["bytes"] == exp["bytes"] and out["hash"] == exp["hash"]
        self.check(sc, label, ok, "%d bytes, hash %s (want %d, %s)" % (
            out["bytes"], out["hash"], exp["bytes"], exp["hash"]))

    def drop_caches(self):
        run_quiet(["sync"])
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError as e:
            self.can_drop = False
            self.notrun[("S3", "all")] = "cannot drop the page cache: %s" % e
            return False
        self.server_warm = False
        return True

    def large_folios(self, path):
        """The share (%) of path's resident pages that the page cache holds
        in large folios, or None where the machine does not tell (not
        root).  A read from the page cache costs per folio, so this is
        what separates two page-cache reads of the same bytes."""
        p = run_quiet([self.bt, "folios", path])
        if p.returncode != 0:
            return None
        out = json.loads(p.stdout)
        if not out["resident"]:
            return None
        return 100.0 * out["large"] / out["resident"]

    def warm(self, *paths):
        """Bring files into the page cache."""
        for p in paths:
            subprocess.run(["cat", p], stdout=subprocess.DEVNULL)

    def warm_server(self):
        """The local Hub serves from the page cache, as in every run."""
        if not self.server_warm:
            for d in (("lfs", "objects"), ("blobcache",)):
                for root, _, files in os.walk(os.path.join(self.data, *d)):
                    for f in files:
                        subprocess.run(["cat", os.path.join(root, f)],
                                       stdout=subprocess.DEVNULL)
            self.server_warm = True

    def prime_server(self):
        """The local Hub builds a commit's tree index, and writes each git
        blob out for sendfile, the first time they are asked for.  Do that
        once, untimed, so that no contender pays for it."""
        repos = [("models/%s/seq" % NS, []),
                 ("models/%s/model" % NS,
                  [f for f in self.model_files if not f.endswith(".safetensors")])]
        repos += [(ds["repo"], ds["files"]) for ds in self.ds]
        cfg = self.fresh("curlcfg")
        with open(cfg, "w") as f:
            entries = []
            for repo, files in repos:
                entries.append("%s/api/%s/tree/main?recursive=true" % (
                    self.hub.url, repo))
                entries += [self.resolve_url(repo, p) for p in files]
            f.write("".join('url = "%s"\noutput = "/dev/null"\n' % u
                            for u in entries))
        subprocess.run(["curl", "-sSf", "--no-progress-meter", "-Z",
                        "--parallel-max", "8", "-K", cfg], check=True)

    def new_cache(self):
        d = self.fresh("cache")
        os.makedirs(d)
        # hubfs writes what it fetches to disk, and the kernel throttles
        # writers while the dirty pages of earlier steps (seeding, other
        # scenarios) are still being written back: start each cold run
        # with none, as the baselines (which write nothing) do.
        run_quiet(["sync"])
        return d

    def hubfs(self, source, cache, token=READ_TOKEN, ro=True, cpu=None):
        """cpu: run the daemon (and so every thread it starts) on that CPU
        only."""
        mnt = self.fresh("mnt")
        opts = ["cache_dir=" + cache]
        if self.cache_size:
            opts.append("cache_size=%d" % self.cache_size)
        if ro:
            opts.append("ro")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env["HOME"] = self.path("home")
        env["HF_ENDPOINT"] = self.hub.url
        if token:
            env["HF_TOKEN"] = token
        return FuseProc(self, pinned(cpu) + [self.hubfs_bin, "-f", source,
                                             mnt, "-o", ",".join(opts)],
                        mnt, env,
                        self.path("logs", "hubfs-%d.err" % self.counter))

    def passthrough(self, src, writable=False, opts="", cpu=None):
        mnt = self.fresh("pt")
        opt = "source=" + src + (",writable" if writable else "") + opts
        return FuseProc(self, pinned(cpu) + [self.pt_bin, "-f", mnt, "-o", opt],
                        mnt, dict(os.environ),
                        self.path("logs", "passthrough.err"))

    def hubfs_sample(self, m, window):
        s = tsample(traffic(window))
        s["rss"] = m.rss()
        return s

    def resolve_url(self, repo, path):
        plural, ns, name = repo.split("/")
        prefix = "" if plural == "models" else plural + "/"
        return "%s/%s%s/%s/resolve/main/%s" % (
            self.hub.url, prefix, ns, name, urllib.parse.quote(path))

    # --- build ----------------------------------------------------------
    def build(self):
        a = self.args
        self.build_dir = os.path.abspath(a.build_dir or os.path.join(
            tempfile.gettempdir(), "hubfs-bench-build"))
        os.makedirs(self.build_dir, exist_ok=True)
        if a.hubfs:
            self.hubfs_bin = os.path.abspath(a.hubfs)
            cache = os.path.join(os.path.dirname(self.hubfs_bin),
                                 "CMakeCache.txt")
            self.build_type = "prebuilt"
            try:
                with open(cache) as f:
                    m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", f.read(), re.M)
                    if m:
                        self.build_type = m.group(1) + " (prebuilt)"
            except OSError:
                pass
        else:
            log("building hubfs (Release) in the build directory")
            subprocess.run(["cmake", "-S", ROOT, "-B", self.build_dir,
                            "-DCMAKE_BUILD_TYPE=Release",
                            "-DHUBFS_BUILD_TESTS=OFF"], check=True,
                           stdout=subprocess.DEVNULL)
            subprocess.run(["cmake", "--build", self.build_dir, "-j",
                            str(os.cpu_count() or 2), "--target", "hubfs"],
                           check=True, stdout=subprocess.DEVNULL)
            self.hubfs_bin = os.path.join(self.build_dir, "hubfs")
            self.build_type = "Release"
        hdir = os.path.join(self.build_dir, "bench")
        os.makedirs(hdir, exist_ok=True)
        self.bt = os.path.join(hdir, "benchtool")
        self.pt_bin = os.path.join(hdir, "passthrough")
        subprocess.run(["cc", "-O2", "-Wall", "-o", self.bt,
                        os.path.join(BENCH, "benchtool.c")], check=True)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"],
                               check=True, stdout=subprocess.PIPE
                               ).stdout.decode().split()
        subprocess.run(["cc", "-O2", "-Wall", "-o", self.pt_bin,
                        os.path.join(BENCH, "passthrough.c")] + flags,
                       check=True)

    # --- seeding --------------------------------------------------------
    def lh(self, *args):
        p = subprocess.run([PY, LOCALHUB] + list(args), check=True,
                           stdout=subprocess.PIPE)
        out = p.stdout.decode().strip()
        return json.loads(out) if out else None

    def export(self, repo, dest):
        """The repo's main tree as local files; LFS pointers become hard
        links to the LFS objects (the same bytes the Hub serves)."""
        plural, ns, name = repo.split("/")
        git_dir = os.path.join(self.data, "repos", plural, ns, name + ".git")
        os.makedirs(dest)
        # No LFS smudge filter: the pointers are what the tree holds.
        subprocess.run(["bash", "-o", "pipefail", "-c",
                        "git -c filter.lfs.process= -c filter.lfs.smudge= "
                        "-c filter.lfs.required=false --git-dir=%s archive "
                        "--format=tar main | tar -x -C %s" % (
                            shlex.quote(git_dir), shlex.quote(dest))],
                       check=True)
        spec = b"version https://git-lfs.github.com/spec/v1\n"
        for root, _, files in os.walk(dest):
            for fn in files:
                p = os.path.join(root, fn)
                if os.path.getsize(p) > 1024:
                    continue
                with open(p, "rb") as f:
                    data = f.read()
                if not data.startswith(spec):
                    continue
                oid = re.search(rb"oid sha256:([0-9a-f]{64})", data).group(1).decode()
                os.unlink(p)
                os.link(os.path.join(self.data, "lfs", "objects", oid[:2],
                                     oid[2:4], oid), p)

    def seed(self):
        sz = self.sz
        t0 = time.time()
        d = self.data
        # 1. Two large LFS files, from benchtool gen (seeded).
        self.seq_local = self.path("local", "seq")
        os.makedirs(self.seq_local)
        self.seq_files = []
        for i, size in enumerate(sz["seq"]):
            name = "seq-%s.bin" % ("small", "big")[i]
            with open(os.path.join(self.seq_local, name), "wb") as f:
                subprocess.run([self.bt, "gen", str(101 + i), str(size)],
                               stdout=f, check=True)
            self.seq_files.append((name, size))
        self.lh("seed-dir", "--data", d, "--message", "Seed", NS + "/seq",
                self.seq_local)
        # 2. A multi-shard safetensors model.
        self.lh("seed-model", "--data", d, NS + "/model", "--shards",
                str(sz["shards"]), "--shard-size", str(sz["shard_size"]),
                "--seed", "5", "--no-history")
        self.model_local = self.path("local", "model")
        self.export("models/%s/model" % NS, self.model_local)
        self.shards = sorted(f for f in os.listdir(self.model_local)
                             if f.endswith(".safetensors"))
        self.model_files = sorted(
            os.path.relpath(os.path.join(r, f), self.model_local)
            for r, _, fs in os.walk(self.model_local) for f in fs)
        # 3. Two datasets of small files (regular files, no LFS).
        self.ds = []
        for i, n in enumerate(sz["files"]):
            name = "ds-%s" % ("small", "big")[i]
            self.lh("seed-dataset", "--data", d, "datasets/%s/%s" % (NS, name),
                    "--files", str(n), "--seed", str(1 + i))
            local = self.path("local", name)
            self.export("datasets/%s/%s" % (NS, name), local)
            files = sorted(os.path.relpath(os.path.join(r, f), local)
                           for r, _, fs in os.walk(local) for f in fs)
            dirs = sum(len(ds) for _, ds, _ in os.walk(local))
            self.ds.append({"name": name, "repo": "datasets/%s/%s" % (NS, name),
                            "local": local, "files": files, "dirs": dirs})
        # 4. An empty repo for the writes.
        self.lh("create-repo", "--data", d, NS + "/write")
        log("seeded the local Hub in %.1fs" % (time.time() - t0))

    def expectations(self):
        """What every read must return, from the local copies (untimed)."""
        self.prime_server()
        bt = self.bt
        for name, size in self.seq_files:
            p = os.path.join(self.seq_local, name)
            self.expected[name] = json.loads(run_quiet([bt, "read", p]).stdout)
            for bs, count in self.sz["rand"].items():
                self.expected[(name, bs)] = json.loads(run_quiet(
                    [bt, "rand", "-b", str(bs), "-n", str(count), "-s",
                     str(bs), p]).stdout)
        shards = [os.path.join(self.model_local, s) for s in self.shards]
        self.expected["model"] = json.loads(run_quiet(
            [bt, "model"] + shards).stdout)
        for ds in self.ds:
            ds["listing"] = self.listing_of(ds["local"], self.find_to_file(
                ds["local"]))
            _, out = self.sh('find "$LOCAL" -type f -print0 | xargs -0 cat | '
                             '"$BT" lines -', {"LOCAL": ds["local"]})
            ds["lines"] = json.loads(out)
        # The server and curl serve the seeded bytes (checked once, untimed).
        for name, size in self.seq_files:
            _, out = self.sh('curl -sSL "$URL" | "$BT" read -',
                             {"URL": self.resolve_url("models/%s/seq" % NS, name)})
            got = json.loads(out)
            self.check("S1", "curl single stream (hashed once, untimed)",
                       got["hash"] == self.expected[name]["hash"] and
                       got["bytes"] == size, "%s: %s" % (name, got))

    def find_to_file(self, d):
        out = self.fresh("find")
        subprocess.run("find %s -printf '%%y %%s %%P\\n' > %s" % (
            shlex.quote(d), shlex.quote(out)), shell=True, check=True)
        return out

    @staticmethod
    def listing_of(root, listing_file):
        """find's output, without the sizes of directories (those differ
        between file systems) and without the root itself."""
        entries = []
        with open(listing_file, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                kind, size, path = line.split(" ", 2)
                if not path:
                    continue
                entries.append((kind, int(size) if kind == "f" else 0, path))
        return sorted(entries)

    # --- S1, S2, S3, S10: sequential reads ------------------------------
    def s_seq(self, run):
        repo = "models/%s/seq" % NS
        for i, (name, size) in enumerate(self.seq_files):
            which = ("small", "big")[i]
            big = which == "big"
            hs = human_bytes(size)
            exp = self.expected[name]
            cat = 'cat "$MNT/%s" > /dev/null' % name
            dd = 'dd if="$MNT/%s" of=/dev/null bs=1M status=none' % name
            # hubfs, cold: a fresh cache and a fresh mount.
            self.warm_server()
            cache = self.new_cache()
            with self.hubfs(repo, cache) as m:
                env = {"MNT": m.mnt}
                mk = m.mark0
                secs, _, busy = self.sh_cpu(cat, env)
                w = self.hub.since(mk)
                label = "hubfs cat, cold, %s" % hs
                self.check_read("S1", label, os.path.join(m.mnt, name), exp)
                s = self.record("S1", label, size / secs / 1e6, "MB/s", cat,
                                secs=secs, busy=busy, **self.hubfs_sample(m, w))
                log("S1 %s: %.0f MB/s (%d requests, %s fetched)" % (
                    label, s["value"], s["requests"], human_bytes(s["fetched"])))
                if big:
                    mk = self.hub.mark()
                    secs, _ = self.sh(cat, env)
                    w = self.hub.since(mk)
                    label2 = "hubfs cat, re-read on the same mount, %s" % hs
                    self.check_read("S2", label2, os.path.join(m.mnt, name), exp)
                    s = self.record("S2", label2, size / secs / 1e6, "MB/s", cat,
                                    secs=secs, large_pct=self.large_folios(
                                        os.path.join(m.mnt, name)),
                                    **self.hubfs_sample(m, w))
                    log("S2 %s: %.0f MB/s" % (label2, s["value"]))
            if big:
                # S3 reads this cache later, beside its baseline.
                warm_cache = cache
            else:
                shutil.rmtree(cache)
            # hubfs dd bs=1M, cold.
            self.warm_server()
            cache = self.new_cache()
            with self.hubfs(repo, cache) as m:
                mk = m.mark0
                secs, _, busy = self.sh_cpu(dd, {"MNT": m.mnt})
                w = self.hub.since(mk)
                label = "hubfs dd bs=1M, cold, %s" % hs
                self.check_read("S1", label, os.path.join(m.mnt, name), exp)
                s = self.record("S1", label, size / secs / 1e6, "MB/s", dd,
                                secs=secs, busy=busy, **self.hubfs_sample(m, w))
                log("S1 %s: %.0f MB/s" % (label, s["value"]))
            shutil.rmtree(cache)
            # curl, one stream, through /resolve/ and its redirect.
            url = self.resolve_url(repo, name)
            c1 = 'curl -sSL -o /dev/null -w "%{size_download}" "$URL"'
            mk = self.hub.mark()
            secs, out, busy = self.sh_cpu(c1, {"URL": url})
            w = traffic(self.hub.since(mk))
            self.check("S1", "curl single stream, %s" % hs, int(out) == size,
                       "%s bytes (want %d)" % (out, size))
            s = self.record("S1", "curl single stream, %s" % hs,
                            size / secs / 1e6, "MB/s", c1, secs=secs,
                            busy=busy, **tsample(w))
            log("S1 curl single %s: %.0f MB/s" % (hs, s["value"]))
            # curl, N parallel ranges of the signed CDN URL.
            n = self.sz["parallel"]
            _, cdn = self.sh('curl -s -o /dev/null -w "%{redirect_url}" "$URL"',
                             {"URL": url})
            step = -(-size // n)
            ranges = " ".join("%d-%d" % (o, min(size, o + step) - 1)
                              for o in range(0, size, step))
            cn = ('for r in $RANGES; do curl -sS -r "$r" -o /dev/null '
                  '-w "%{size_download}\\n" "$CDN" & done; wait')
            mk = self.hub.mark()
            secs, out = self.sh(cn, {"RANGES": ranges, "CDN": cdn.strip()})
            w = traffic(self.hub.since(mk))
            got = [int(x) for x in out.split()]
            label = "curl %d parallel ranges, %s" % (n, hs)
            self.check("S1", label, sum(got) == size and
                       len(got) == len(ranges.split()),
                       "%d bytes in %d ranges (want %d)" % (sum(got), len(got), size))
            s = self.record("S1", label, size / secs / 1e6, "MB/s",
                            'RANGES="0-%d %d-%d ..."; ' % (step - 1, step,
                                                           2 * step - 1) + cn,
                            secs=secs, **tsample(w))
            log("S1 %s: %.0f MB/s" % (label, s["value"]))
            # The minimal passthrough over the page-cached local file.
            local = os.path.join(self.seq_local, name)
            for kind, cmd in (("cat", cat), ("dd bs=1M", dd)):
                self.warm(local)
                with self.passthrough(self.seq_local) as pt:
                    secs, _, busy = self.sh_cpu(cmd.replace("$MNT", "$PT"),
                                                {"PT": pt.mnt})
                    label = "passthrough %s, %s" % (kind, hs)
                    self.check_read("S1", label, os.path.join(pt.mnt, name), exp)
                    s = self.record("S1", label, size / secs / 1e6, "MB/s",
                                    cmd.replace("$MNT", "$PT"), secs=secs,
                                    busy=busy)
                    log("S1 %s: %.0f MB/s" % (label, s["value"]))
            # What checking the content costs, on one core: hubfs hashes
            # every byte of an LFS file; neither baseline does.
            label = "SHA-256 in memory, one core, %s" % hs
            cpu = sha256_cpu_secs(size)
            self.record("S1", label, cpu, "s", "hashlib.sha256 (OpenSSL) "
                        "over %s in memory, process CPU time" % hs)
            log("S1 %s: %.2f s" % (label, cpu))
            try:
                self.s_scale_used_memory(run, repo, name, size)
            except Exception as e:
                # S1's remaining baselines, S2 and S3 still run.
                self.step_failed("S10", run, e)
            # The local file, from the page cache.
            self.warm(local)
            lc = 'cat "$LOCAL/%s" > /dev/null' % name
            secs, _ = self.sh(lc, {"LOCAL": self.seq_local})
            s = self.record("S1" if not big else "S2",
                            "local file cat, page cache, %s" % hs,
                            size / secs / 1e6, "MB/s", lc, secs=secs,
                            large_pct=self.large_folios(local) if big else None)
            if big:
                # S2's FUSE ceiling: the passthrough keeping its page cache
                # across opens, as hubfs does, read as hubfs's file is: a
                # first read, the check, then the timed one (the kernel
                # moves a page to its active list on its second use, which
                # costs per page).
                label = "passthrough -o kernel_cache cat, re-read, %s" % hs
                opts = ",kernel_cache"
                with self.passthrough(self.seq_local, opts=opts) as pt:
                    c = cat.replace("$MNT", "$PT")
                    path = os.path.join(pt.mnt, name)
                    self.sh(c, {"PT": pt.mnt})
                    self.check_read("S2", label, path, exp)
                    secs, _ = self.sh(c, {"PT": pt.mnt})
                    s = self.record("S2", label, size / secs / 1e6, "MB/s",
                                    ["passthrough -o kernel_cache ...; " + c,
                                     c], secs=secs,
                                    large_pct=self.large_folios(path))
                    log("S2 %s: %.0f MB/s" % (label, s["value"]))
                self.s_warm_remount(run, repo, name, size, warm_cache)
            # Peers.
            if self.js_ok:
                out_file = self.fresh("jsdl")
                pj = ('node tests/bench/peer_js.mjs download "$HUB" '
                      'models/%s/seq %s "$OUT"' % (NS, name))
                self.warm_server()
                mk = self.hub.mark()
                secs, _ = self.sh(pj, {"HUB": self.hub.url, "OUT": out_file,
                                       "HF_TOKEN": READ_TOKEN})
                w = traffic(self.hub.since(mk))
                label = "@huggingface/hub downloadFile, %s" % hs
                self.check_read("S1", label, out_file, exp)
                os.unlink(out_file)
                s = self.record("S1", label, size / secs / 1e6, "MB/s", pj,
                                secs=secs, **tsample(w))
                log("S1 %s: %.0f MB/s" % (label, s["value"]))
            if big:
                self.s1_hffs(run, name, size, exp)


    def step_failed(self, sc, run, e):
        """Record a scenario's failure in @run, and unmount what it left."""
        self.errors.append((sc, "run %d: %s" % (run + 1, e)))
        log("ERROR in %s: %s" % (sc, traceback.format_exc()))
        for m in list(self.live):
            m.stop()

    def pt_cat(self, sc, label, name, prep_cmd, prep):
        """The passthrough's timed cat of the local copy of @name on a new
        mount, right after prep(), which returns False to skip it, or else
        True or a dict of more fields for the sample."""
        exp = self.expected[name]
        c = 'cat "$PT/%s" > /dev/null' % name
        with self.passthrough(self.seq_local) as pt:
            got = prep()
            if not got:
                return
            extra = got if isinstance(got, dict) else {}
            secs, _ = self.sh(c, {"PT": pt.mnt})
            self.check_read(sc, label, os.path.join(pt.mnt, name), exp)
            s = self.record(sc, label, exp["bytes"] / secs / 1e6, "MB/s",
                            [prep_cmd, c], secs=secs, **extra)
            log("%s %s: %.0f MB/s" % (sc, label, s["value"]))

    def s_scale_used_memory(self, run, repo, name, size):
        """S10: S1's cold cat again, hubfs and the passthrough, each right
        after `benchtool touch` has used and freed more memory than the
        read will fill, so that at every size the read's new pages are ones
        the machine has just used.  On a virtual machine that gives freed
        memory back to its host, the first use of such a page costs a fault
        on the host, and a large cold read finds fewer recently used pages
        than a small one: S1's times then grow faster than the size, for
        the passthrough too (findings.md, "Scale").  Which goes first
        alternates."""
        hs = human_bytes(size)
        exp = self.expected[name]
        cat = 'cat "$MNT/%s" > /dev/null' % name
        touch = '"$BT" touch $BYTES'

        def touch_env():
            # More than the read's new pages (the FUSE file's, the cache
            # file's, the copies in flight), but never so much that the
            # page cache the baselines rely on would be evicted.
            kib = proc_field("/proc/meminfo", "MemFree:").split()[0]
            free = int(kib) * 1024 if kib.isdigit() else 0
            return {"BT": self.bt,
                    "BYTES": str(max(0, min(size * 5 // 2 + 64 * MiB,
                                            free - 512 * MiB)))}

        def touch_now():
            _, out = self.sh(touch, touch_env())
            return {"touched_mib": json.loads(out)["bytes"] / MiB}

        def hub_read():
            self.warm_server()
            cache = self.new_cache()
            try:
                with self.hubfs(repo, cache) as m:
                    touched = touch_now()
                    mk = m.mark0
                    secs, _ = self.sh(cat, {"MNT": m.mnt})
                    w = self.hub.since(mk)
                    label = "hubfs cat, cold, memory just used, %s" % hs
                    self.check_read("S10", label, os.path.join(m.mnt, name),
                                    exp)
                    s = self.record("S10", label, size / secs / 1e6, "MB/s",
                                    [touch, cat], secs=secs,
                                    **touched, **self.hubfs_sample(m, w))
                    log("S10 %s: %.0f MB/s" % (label, s["value"]))
            finally:
                shutil.rmtree(cache)

        def pt_read():
            self.warm(os.path.join(self.seq_local, name))
            self.pt_cat("S10", "passthrough cat, memory just used, %s" % hs,
                        name, touch, touch_now)

        for read in ((hub_read, pt_read) if run % 2 == 0
                     else (pt_read, hub_read)):
            read()

    def s_warm_remount(self, run, repo, name, size, cache):
        """S3: hubfs over its warm cache and the passthrough over the local
        copy, each on a new mount with the page cache dropped, back to back
        and in turns (which goes first alternates by run), so that both
        read from a disk in the same state."""
        hs = human_bytes(size)
        exp = self.expected[name]
        cat = 'cat "$MNT/%s" > /dev/null' % name
        drop = "sync; echo 3 > /proc/sys/vm/drop_caches"

        def hub_read():
            with self.hubfs(repo, cache) as m:
                if not self.drop_caches():
                    return
                mk = m.mark0
                secs, _ = self.sh(cat, {"MNT": m.mnt})
                w = self.hub.since(mk)
                label = "hubfs cat, remounted warm cache, page cache dropped, %s" % hs
                self.check_read("S3", label, os.path.join(m.mnt, name), exp)
                s = self.record("S3", label, size / secs / 1e6, "MB/s",
                                [drop, cat], secs=secs, **self.hubfs_sample(m, w))
                log("S3 %s: %.0f MB/s (%s fetched)" % (
                    label, s["value"], human_bytes(s["fetched"])))

        def pt_read():
            self.pt_cat("S3", "passthrough cat, page cache dropped, %s" % hs,
                        name, drop, self.drop_caches)

        try:
            if self.can_drop:
                for read in ((hub_read, pt_read) if run % 2 == 0
                             else (pt_read, hub_read)):
                    read()
        finally:
            shutil.rmtree(cache)
    def s1_hffs(self, run, name, size, exp):
        label = "HfFileSystem via fsspec.fuse, cat, cold, %s" % human_bytes(size)
        if self.hffs_reason:
            self.notrun[("S1", label)] = self.hffs_reason
            return
        mnt = self.fresh("hffs")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env["HOME"] = self.path("home")
        env["HF_TOKEN"] = READ_TOKEN
        argv = [PY, os.path.join(BENCH, "hffs_mount.py"), self.hub.url,
                "%s/%s" % (NS, "seq"), mnt]
        self.warm_server()
        with FuseProc(self, argv, mnt, env, self.path("logs", "hffs.err")) as m:
            cat = 'cat "$MNT/%s" > /dev/null' % name
            mk = m.mark0
            secs, _ = self.sh(cat, {"MNT": m.mnt})
            w = traffic(self.hub.since(mk))
            self.check_read("S1", label, os.path.join(m.mnt, name), exp)
            s = self.record("S1", label, size / secs / 1e6, "MB/s",
                            ["/usr/bin/python3 tests/bench/hffs_mount.py "
                             "$HUB demo/seq $MNT", cat], secs=secs,
                            **tsample(w))
            log("S1 %s: %.0f MB/s" % (label, s["value"]))

    # --- S4: random reads -----------------------------------------------
    def s_random(self, run):
        repo = "models/%s/seq" % NS
        name, size = self.seq_files[-1]
        local = os.path.join(self.seq_local, name)
        for bs, count in self.sz["rand"].items():
            hb = human_bytes(bs)
            exp = self.expected[(name, bs)]
            rnd = '"$BT" rand -b %d -n %d -s %d "$MNT/%s"' % (bs, count, bs, name)
            # The same reads again, the file's pages dropped from the page
            # cache first, so that they reach hubfs.
            rnd_d = rnd.replace(" rand ", " rand -D ")
            self.warm_server()
            cache = self.new_cache()
            # The last mount runs the daemon and the reader on one CPU:
            # each FUSE read wakes the daemon and then the reader, and a
            # wake-up across CPUs costs what the machine makes it cost, so
            # this row shows hubfs's own cost whatever the scheduler does.
            for phases, cpu in ((("cold", "warm, same mount"), None),
                                (("warm, new mount",), None),
                                (("warm, new mount, one CPU",), PIN_CPU)):
                with self.hubfs(repo, cache, cpu=cpu) as m:
                    for i, phase in enumerate(phases):
                        # The lookup and open are not part of the reads
                        # timed (benchtool times each pread).
                        os.stat(os.path.join(m.mnt, name))
                        mk = m.mark0 if i == 0 else self.hub.mark()
                        cmd = rnd if phase == "cold" else rnd_d
                        cmd = " ".join(pinned(cpu) + [cmd])
                        _, out = self.sh(cmd, {"MNT": m.mnt})
                        w = self.hub.since(mk)
                        r = json.loads(out)
                        label = "hubfs %s random reads, %s" % (hb, phase)
                        self.check("S4", label, r["hash"] == exp["hash"] and
                                   r["bytes"] == exp["bytes"],
                                   "%s vs %s" % (r, exp))
                        t = traffic(w)
                        s = self.record("S4", label, r["median_us"], "us", cmd,
                                        p99_us=r["p99_us"], secs=r["secs"],
                                        mbps=r["bytes"] / r["secs"] / 1e6,
                                        amplification=t["cdn_bytes"] / r["bytes"],
                                        **self.hubfs_sample(m, w))
                        log("S4 %s: median %.0f us, p99 %.0f us, %.0f MB/s, "
                            "amplification %.2f" % (label, r["median_us"],
                                                    r["p99_us"], s["mbps"],
                                                    s["amplification"]))
            shutil.rmtree(cache)
            # curl: the same ranges from the CDN, one connection kept alive.
            _, offs = self.sh('"$BT" rand -P -b %d -n %d -s %d "$LOCAL/%s"' % (
                bs, count, bs, name), {"LOCAL": self.seq_local})
            _, cdn = self.sh('curl -s -o /dev/null -w "%{redirect_url}" "$URL"',
                             {"URL": self.resolve_url(repo, name)})
            cfg = self.fresh("curlcfg")
            with open(cfg, "w") as f:
                f.write("next\n".join(
                    'url = "%s"\nrange = "%d-%d"\noutput = "/dev/null"\n'
                    'write-out = "%%{time_total} %%{size_download}\\n"\n' % (
                        cdn.strip(), int(o), int(o) + bs - 1)
                    for o in offs.split()))
            cc = 'curl -sS --no-progress-meter -K "$CFG"'
            mk = self.hub.mark()
            secs, out = self.sh(cc, {"CFG": cfg})
            w = traffic(self.hub.since(mk))
            lines = [l.split() for l in out.splitlines() if l.strip()]
            lat = sorted(float(a) * 1e6 for a, _ in lines)
            got = sum(int(b) for _, b in lines)
            label = "curl %s ranges, one connection" % hb
            self.check("S4", label, got == bs * count,
                       "%d bytes (want %d)" % (got, bs * count))
            self.record("S4", label, lat[len(lat) // 2], "us", cc,
                        p99_us=lat[min(len(lat) - 1, len(lat) * 99 // 100)],
                        secs=secs, mbps=got / secs / 1e6,
                        amplification=w["cdn_bytes"] / got,
                        **tsample(w))
            # The passthrough and the local file (page-cached).
            self.warm(local)
            for cpu, where in ((None, ""), (PIN_CPU, ", one CPU")):
                with self.passthrough(self.seq_local, cpu=cpu) as pt:
                    c = " ".join(pinned(cpu) + [rnd_d.replace("$MNT", "$PT")])
                    _, out = self.sh(c, {"PT": pt.mnt})
                    r = json.loads(out)
                    label = "passthrough %s random reads%s" % (hb, where)
                    self.check("S4", label, r["hash"] == exp["hash"], str(r))
                    self.record("S4", label, r["median_us"], "us", c,
                                p99_us=r["p99_us"], secs=r["secs"],
                                mbps=r["bytes"] / r["secs"] / 1e6)
            c = rnd.replace("$MNT", "$LOCAL")
            _, out = self.sh(c, {"LOCAL": self.seq_local})
            r = json.loads(out)
            self.record("S4", "local file %s random reads" % hb, r["median_us"],
                        "us", c, p99_us=r["p99_us"], secs=r["secs"],
                        mbps=r["bytes"] / r["secs"] / 1e6)

    # --- S5: model load -------------------------------------------------
    def load_cmd(self, var):
        return ('for r in $(seq 0 $((P - 1))); do "$BT" model -r $r -p $P '
                '"%s"/model-*.safetensors > "$OUT.$r" & done; wait' % var)

    def load_result(self, sc, label, out):
        h, nbytes = 0, 0
        for r in range(self.sz["procs"]):
            with open("%s.%d" % (out, r)) as f:
                j = json.load(f)
            h ^= int(j["hash"], 16)
            nbytes += j["bytes"]
            os.unlink("%s.%d" % (out, r))
        exp = self.expected["model"]
        self.check(sc, label, "%016x" % h == exp["hash"] and
                   nbytes == exp["bytes"], "%016x, %d bytes (want %s, %d)" % (
                       h, nbytes, exp["hash"], exp["bytes"]))
        return nbytes

    def s_model(self, run):
        repo = "models/%s/model" % NS
        P = str(self.sz["procs"])
        load = self.load_cmd("$MNT")
        total = self.expected["model"]["bytes"]
        self.warm_server()
        cache = self.new_cache()
        for phase in ("cold", "warm"):
            with self.hubfs(NS + "/model", cache) as m:
                out = self.fresh("load")
                mk = m.mark0
                secs, _, busy = self.sh_cpu(load, {"MNT": m.mnt, "P": P,
                                                   "OUT": out})
                w = self.hub.since(mk)
                label = "hubfs model load, %s" % phase
                self.load_result("S5", label, out)
                s = self.record("S5", label, secs, "s", load, busy=busy,
                                mbps=total / secs / 1e6, **self.hubfs_sample(m, w))
                log("S5 %s: %.2fs (%s fetched)" % (label, secs,
                                                   human_bytes(s["fetched"])))
        shutil.rmtree(cache)
        # curl downloads the repo (parallel transfers), then a local load.
        dl = self.fresh("dl")
        cfg = self.fresh("curlcfg")
        with open(cfg, "w") as f:
            for p in self.model_files:
                f.write('url = "%s"\noutput = "%s"\n' % (
                    self.resolve_url(repo, p), os.path.join(dl, p)))
        getc = ('curl -sSL --no-progress-meter -Z --parallel-max $P '
                '--create-dirs -K "$CFG"')
        out = self.fresh("load")
        self.warm_server()
        mk = self.hub.mark()
        secs_dl, _, busy_dl = self.sh_cpu(getc, {"CFG": cfg, "P": P})
        w = traffic(self.hub.since(mk))
        loc = self.load_cmd("$OUT_DIR")
        secs_ld, _ = self.sh(loc, {"OUT_DIR": dl, "P": P, "OUT": out})
        self.load_result("S5", "curl download + local load", out)
        self.record("S5", "curl download + local load", secs_dl + secs_ld, "s",
                    [getc, loc.replace("$OUT_DIR", "$LOCAL")],
                    download_secs=secs_dl, download_busy=busy_dl,
                    mbps=total / (secs_dl + secs_ld) / 1e6, **tsample(w))
        # The same load again: local files in the page cache.
        secs, _ = self.sh(loc, {"OUT_DIR": dl, "P": P, "OUT": out})
        self.load_result("S5", "local load, page cache", out)
        self.record("S5", "local load, page cache", secs, "s",
                    loc.replace("$OUT_DIR", "$LOCAL"), mbps=total / secs / 1e6)
        shutil.rmtree(dl)
        # The passthrough: FUSE's own cost for mmap loads.
        self.warm(*[os.path.join(self.model_local, s) for s in self.shards])
        with self.passthrough(self.model_local) as pt:
            c = self.load_cmd("$PT")
            secs, _, busy = self.sh_cpu(c, {"PT": pt.mnt, "P": P, "OUT": out})
            self.load_result("S5", "passthrough load", out)
            self.record("S5", "passthrough load", secs, "s", c, busy=busy,
                        mbps=total / secs / 1e6)
        label = "SHA-256 in memory, one core, %s" % human_bytes(total)
        self.record("S5", label, sha256_cpu_secs(total), "s",
                    "hashlib.sha256 (OpenSSL) over %s in memory, process CPU "
                    "time" % human_bytes(total))
        # Peer: snapshotDownload, then the same local load.
        if self.js_ok:
            cache_dir = self.fresh("jscache")
            pj = 'node tests/bench/peer_js.mjs snapshot "$HUB" %s "$OUT"' % repo
            self.warm_server()
            mk = self.hub.mark()
            secs_dl, o = self.sh(pj, {"HUB": self.hub.url, "OUT": cache_dir,
                                      "HF_TOKEN": READ_TOKEN})
            w = traffic(self.hub.since(mk))
            snap = json.loads(o.strip().splitlines()[-1])["snapshot"]
            secs_ld, _ = self.sh(loc, {"OUT_DIR": snap, "P": P, "OUT": out})
            label = "@huggingface/hub snapshotDownload + local load"
            self.load_result("S5", label, out)
            self.record("S5", label, secs_dl + secs_ld, "s",
                        [pj, loc.replace("$OUT_DIR", "$OUT/<snapshot>")],
                        download_secs=secs_dl, **tsample(w))
            shutil.rmtree(cache_dir)

    # --- S6, S10: metadata ----------------------------------------------
    def s_meta(self, run):
        find = """find "$MNT" -printf '%y %s %P\\n' > "$OUT\""""
        for ds in self.ds:
            n = len(ds["files"])
            entries = n + ds["dirs"]
            cache = self.new_cache()
            # cold and warm on one mount, then warm on a new mount.
            for phases in (("cold", "warm, same mount"), ("warm, remounted",)):
                with self.hubfs(ds["repo"], cache) as m:
                    for i, phase in enumerate(phases):
                        out = self.fresh("find")
                        mk = m.mark0 if i == 0 else self.hub.mark()
                        secs, _ = self.sh(find, {"MNT": m.mnt, "OUT": out})
                        w = self.hub.since(mk)
                        label = "hubfs find, %s, %d files" % (phase, n)
                        got = self.listing_of(m.mnt, out)
                        self.check("S6", label, got == ds["listing"],
                                   "%d entries (want %d)" % (
                                       len(got), len(ds["listing"])))
                        s = self.record("S6", label, entries / secs,
                                        "entries/s", find, secs=secs,
                                        **self.hubfs_sample(m, w))
                        log("S6 %s: %.2fs, %.0f entries/s, requests %s" % (
                            label, secs, s["value"], s["routes"]))
            shutil.rmtree(cache)
            # The same tree on local disk (its inodes cached).
            lf = find.replace("$MNT", "$LOCAL")
            self.sh(lf, {"LOCAL": ds["local"], "OUT": self.fresh("find")})
            out = self.fresh("find")
            secs, _ = self.sh(lf, {"LOCAL": ds["local"], "OUT": out})
            label = "local find, %d files" % n
            self.check("S6", label, self.listing_of(ds["local"], out) ==
                       ds["listing"], "local listing")
            self.record("S6", label, entries / secs, "entries/s", lf,
                        secs=secs)
            # The local analogue of a new mount over a warm cache: the
            # tree's blocks in memory, the kernel's dentries and inodes
            # dropped (a new FUSE mount starts with none).
            out = self.fresh("find")
            drop = "sync; echo 2 > /proc/sys/vm/drop_caches"
            self.sh(drop)
            secs, _ = self.sh(lf, {"LOCAL": ds["local"], "OUT": out})
            label = "local find, dentries and inodes dropped, %d files" % n
            self.check("S6", label, self.listing_of(ds["local"], out) ==
                       ds["listing"], "local listing")
            self.record("S6", label, entries / secs, "entries/s",
                        [drop, lf], secs=secs)

    # --- S7: many small files -------------------------------------------
    def s_small(self, run):
        ds = self.ds[-1]
        n = len(ds["files"])
        P = str(self.sz["parallel"])
        catx = ('find "$MNT" -type f -print0 | xargs -0 -P $P -n 64 cat | '
                '"$BT" lines -')
        cache = self.new_cache()
        with self.hubfs(ds["repo"], cache) as m:
            mk = m.mark0
            secs, out = self.sh(catx, {"MNT": m.mnt, "P": P})
            w = self.hub.since(mk)
            label = "hubfs find + xargs -P cat, cold, %d files" % n
            got = json.loads(out)
            self.check("S7", label, got == ds["lines"], "%s vs %s" % (
                got, ds["lines"]))
            s = self.record("S7", label, secs, "s", catx,
                            files_per_s=n / secs, **self.hubfs_sample(m, w))
            log("S7 %s: %.2fs, %d requests" % (label, secs, s["requests"]))
        shutil.rmtree(cache)
        # curl: every file, P transfers in parallel, connections kept alive.
        dl = self.fresh("dl")
        cfg = self.fresh("curlcfg")
        with open(cfg, "w") as f:
            for p in ds["files"]:
                f.write('url = "%s"\noutput = "%s"\n' % (
                    self.resolve_url(ds["repo"], p), os.path.join(dl, p)))
        getc = ('curl -sSL --no-progress-meter -Z --parallel-max $P '
                '--create-dirs -K "$CFG"')
        mk = self.hub.mark()
        secs, _ = self.sh(getc, {"CFG": cfg, "P": P})
        w = traffic(self.hub.since(mk))
        _, out = self.sh('find "$OUT" -type f -print0 | xargs -0 cat | '
                         '"$BT" lines -', {"OUT": dl})
        label = "curl every file, %s parallel" % P
        self.check("S7", label, json.loads(out) == ds["lines"], out)
        self.record("S7", label, secs, "s", getc, files_per_s=n / secs,
                    **tsample(w))
        shutil.rmtree(dl)
        if self.js_ok:
            cache_dir = self.fresh("jscache")
            pj = 'node tests/bench/peer_js.mjs snapshot "$HUB" %s "$OUT"' % ds["repo"]
            mk = self.hub.mark()
            secs, o = self.sh(pj, {"HUB": self.hub.url, "OUT": cache_dir,
                                   "HF_TOKEN": READ_TOKEN})
            w = traffic(self.hub.since(mk))
            snap = json.loads(o.strip().splitlines()[-1])["snapshot"]
            _, out = self.sh('find -L "$OUT" -type f -print0 | xargs -0 cat | '
                             '"$BT" lines -', {"OUT": snap})
            label = "@huggingface/hub snapshotDownload"
            self.check("S7", label, json.loads(out) == ds["lines"], out)
            self.record("S7", label, secs, "s", pj, files_per_s=n / secs,
                        **tsample(w))
            shutil.rmtree(cache_dir)

    # --- S8: writes -----------------------------------------------------
    def gen_file(self, path, seed, size):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            subprocess.run([self.bt, "gen", str(seed), str(size)], stdout=f,
                           check=True)

    def make_checkpoint(self, d, seed):
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"step": seed, "model_type": "llama"}, f)
        for i in range(self.sz["ckpt_files"]):
            self.gen_file(os.path.join(d, "model-%05d.safetensors" % (i + 1)),
                          seed * 100 + i, self.sz["ckpt_size"])

    @staticmethod
    def file_oid(path):
        """(is_lfs, oid): sha256 for LFS-sized content, git blob id else."""
        size = os.path.getsize(path)
        sha = hashlib.sha256()
        git = hashlib.sha1(b"blob %d\0" % size)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(4 * MiB), b""):
                sha.update(chunk)
                git.update(chunk)
        return sha.hexdigest(), git.hexdigest()

    def verify_upload(self, sc, label, prefix, src):
        """The branch now holds src (a file or a directory) under prefix."""
        if os.path.isdir(src):
            files = sorted(os.path.relpath(os.path.join(r, f), src)
                           for r, _, fs in os.walk(src) for f in fs)
            pairs = [(prefix + "/" + f, os.path.join(src, f)) for f in files]
        else:
            pairs = [(prefix, src)]
        info = http_json("POST", "%s/api/models/%s/write/paths-info/main" % (
            self.hub.url, NS), {"paths": [p for p, _ in pairs]},
            {"Authorization": "Bearer " + READ_TOKEN})
        by = {e["path"]: e for e in info}
        bad = []
        for p, local in pairs:
            sha, git = self.file_oid(local)
            e = by.get(p)
            if e is None:
                bad.append("%s missing" % p)
            elif e.get("size") != os.path.getsize(local):
                bad.append("%s size %s" % (p, e.get("size")))
            elif "lfs" in e and e["lfs"]["oid"] != sha:
                bad.append("%s lfs oid" % p)
            elif "lfs" not in e and e["oid"] != git:
                bad.append("%s oid" % p)
        self.check(sc, label, not bad, "; ".join(bad) or "%d files" % len(pairs))

    def drop_objects(self, src):
        """Uploaded objects are not read again: free their disk space."""
        srcs = [src] if not os.path.isdir(src) else [
            os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs]
        for s in srcs:
            sha, _ = self.file_oid(s)
            try:
                os.unlink(os.path.join(self.data, "lfs", "objects", sha[:2],
                                       sha[2:4], sha))
            except OSError:
                pass

    def curl_upload(self, sc, label, files):
        """What a client must do to commit files: preupload, LFS batch,
        the PUTs (multipart parts in parallel), completion and verify, then
        the commit, each as one curl call.  files: [(repo path, local)].
        Hashes are computed before the clock starts.  Returns (secs,
        [commands])."""
        hub = self.hub.url
        api = "%s/api/models/%s/write" % (hub, NS)
        auth = "Authorization: Bearer " + WRITE_TOKEN
        info = []
        for path, local in files:
            sha, _ = self.file_oid(local)
            with open(local, "rb") as f:
                sample = base64.b64encode(f.read(512)).decode()
            info.append({"path": path, "local": local, "sha": sha,
                         "size": os.path.getsize(local), "sample": sample})
        chunk = self.sz["multipart_chunk"]
        parts_dir = self.fresh("parts")
        os.makedirs(parts_dir)
        for i, f in enumerate(info):
            if f["size"] >= self.sz["multipart_threshold"]:
                subprocess.run(["split", "-b", str(chunk), "-d", "-a", "5",
                                f["local"], os.path.join(parts_dir, "%d." % i)],
                               check=True)
        tmp = self.fresh("body")
        total = 0.0
        cmds = []

        def post(step, url, body, ctype="application/json"):
            nonlocal total
            with open(tmp, "w") as fh:
                fh.write(body if isinstance(body, str) else json.dumps(body))
            c = ('curl -sS --fail-with-body -X POST -H "$AUTH" -H "Content-Type: %s" '
                 '--data-binary @"$OUT" "$URL"' % ctype)
            cmds.append("%s    # %s" % (c, step))
            secs, out = self.sh(c, {"AUTH": auth, "OUT": tmp, "URL": url})
            total += secs
            return json.loads(out) if out.strip() else {}

        pre = post("preupload", api + "/preupload/main", {"files": [
            {"path": f["path"], "size": f["size"], "sample": f["sample"]}
            for f in info]})
        modes = {e["path"]: e["uploadMode"] for e in pre["files"]}
        lfs = [f for f in info if modes.get(f["path"]) == "lfs"]
        if lfs:
            batch = post("LFS batch", "%s/%s/write.git/info/lfs/objects/batch" % (hub, NS), {
                "operation": "upload", "transfers": ["basic", "multipart"],
                "hash_algo": "sha256", "ref": {"name": "refs/heads/main"},
                "objects": [{"oid": f["sha"], "size": f["size"]} for f in lfs]},
                ctype="application/vnd.git-lfs+json")
            by_oid = {o["oid"]: o for o in batch["objects"]}
            for i, f in enumerate(info):
                o = by_oid.get(f["sha"])
                if f not in lfs or not o or "actions" not in o:
                    continue
                up = o["actions"]["upload"]
                hdr = up.get("header") or {}
                if "chunk_size" in hdr:
                    if int(hdr["chunk_size"]) != chunk:
                        raise BenchError("unexpected chunk size %s" % hdr["chunk_size"])
                    nums = sorted(k for k in hdr if k.isdigit())
                    pcfg = self.fresh("curlcfg")
                    with open(pcfg, "w") as fh:
                        fh.write("next\n".join(
                            'url = "%s"\nupload-file = "%s"\n'
                            'output = "/dev/null"\nwrite-out = "%d '
                            '%%{http_code} %%header{etag}\\n"\n' % (
                                hdr[k], os.path.join(parts_dir, "%d.%05d" % (
                                    i, int(k) - 1)), int(k))
                            for k in nums))
                    c = ('curl -sS --no-progress-meter -Z --parallel-max $P '
                         '-K "$CFG"')
                    cmds.append(c + "    # the multipart PUTs, P=4")
                    secs, out = self.sh(c, {"CFG": pcfg, "P": "4"})
                    total += secs
                    # Parallel transfers finish in any order: each line
                    # names its part.
                    rows = [l.split() for l in out.splitlines() if l.strip()]
                    etags = {int(r[0]): r[2] for r in rows
                             if len(r) == 3 and r[1] == "200"}
                    if sorted(etags) != [int(k) for k in nums]:
                        raise BenchError("multipart PUTs failed: %s" % out[:500])
                    post("multipart completion", up["href"], {"oid": f["sha"], "parts": [
                        {"partNumber": k, "etag": etags[k].strip('"')}
                        for k in sorted(etags)]})
                else:
                    c = ('curl -sS --fail-with-body -T "$SRC" -o /dev/null '
                         '-w "%{http_code}" "$URL"')
                    cmds.append(c + "    # the PUT (basic transfer)")
                    secs, out = self.sh(c, {"SRC": f["local"], "URL": up["href"]})
                    total += secs
                if "verify" in o["actions"]:
                    post("LFS verify", o["actions"]["verify"]["href"],
                         {"oid": f["sha"], "size": f["size"]},
                         ctype="application/vnd.git-lfs+json")
        lines = [json.dumps({"key": "header", "value": {
            "summary": "Upload %d files" % len(info), "description": ""}})]
        for f in info:
            if modes.get(f["path"]) == "lfs":
                lines.append(json.dumps({"key": "lfsFile", "value": {
                    "path": f["path"], "algo": "sha256", "oid": f["sha"],
                    "size": f["size"]}}))
            else:
                with open(f["local"], "rb") as fh:
                    content = base64.b64encode(fh.read()).decode()
                lines.append(json.dumps({"key": "file", "value": {
                    "path": f["path"], "content": content,
                    "encoding": "base64"}}))
        post("commit", api + "/commit/main", "\n".join(lines) + "\n",
             ctype="application/x-ndjson")
        shutil.rmtree(parts_dir)
        return total, cmds

    def s_write(self, run):
        # The first large write of a run lands in memory the machine has
        # not touched for a while, which costs more here (free page
        # reporting: see docs/PERFORMANCE.md); hubfs and curl therefore
        # take turns going first.
        single = [self.w_single_hubfs, self.w_single_passthrough,
                  self.w_single_curl]
        ckpt = [self.w_ckpt_hubfs, self.w_ckpt_curl]
        if run % 2:
            single.reverse()
            ckpt.reverse()
        for step in single + ckpt:
            step(run)

    def w_source(self, run, seed):
        src = self.fresh("wsrc")
        self.gen_file(src, 1000 + run * 10 + seed, self.sz["write"])
        self.warm(src)
        return src

    DD = 'dd if="$SRC" of="$MNT/single-$RUN.bin" bs=1M conv=fsync status=none'

    def w_single_hubfs(self, run):
        """One large file, written then fsync'ed (dd conv=fsync)."""
        size = self.sz["write"]
        src = self.w_source(run, 1)
        cache = self.new_cache()
        with self.hubfs(NS + "/write", cache, token=WRITE_TOKEN, ro=False) as m:
            mk = m.mark0
            secs, _ = self.sh(self.DD, {"SRC": src, "MNT": m.mnt,
                                        "RUN": str(run)})
            w = self.hub.since(mk)
            label = "hubfs write %s + fsync (one commit)" % human_bytes(size)
            self.verify_upload("S8", label, "single-%d.bin" % run, src)
            s = self.record("S8", label, secs, "s", self.DD,
                            mbps=size / secs / 1e6, **self.hubfs_sample(m, w))
            log("S8 %s: %.2fs (%d requests)" % (label, secs, s["requests"]))
        shutil.rmtree(cache)
        self.drop_objects(src)
        os.unlink(src)

    def w_single_passthrough(self, run):
        """The FUSE ceiling of the same write: the minimal passthrough
        writing into a local directory, with the same dd."""
        size = self.sz["write"]
        src = self.w_source(run, 2)
        dest = self.fresh("ptdest")
        os.makedirs(dest)
        with self.passthrough(dest, writable=True) as pt:
            c = self.DD.replace("$MNT", "$PT")
            secs, _ = self.sh(c, {"SRC": src, "PT": pt.mnt, "RUN": str(run)})
            label = "passthrough write %s + fsync" % human_bytes(size)
            self.check("S8", label, os.path.getsize(os.path.join(
                dest, "single-%d.bin" % run)) == size, "size")
            self.record("S8", label, secs, "s", c, mbps=size / secs / 1e6)
        shutil.rmtree(dest)
        os.unlink(src)

    def w_single_curl(self, run):
        size = self.sz["write"]
        src = self.w_source(run, 3)
        mk = self.hub.mark()
        secs, cmds = self.curl_upload("S8", "curl", [("single-%d-curl.bin" % run, src)])
        w = traffic(self.hub.since(mk))
        label = "curl upload %s + commit" % human_bytes(size)
        self.verify_upload("S8", label, "single-%d-curl.bin" % run, src)
        self.record("S8", label, secs, "s", cmds, mbps=size / secs / 1e6,
                    **tsample(w))
        self.drop_objects(src)
        os.unlink(src)

    def w_checkpoint(self, run, seed):
        src = self.fresh("ckpt")
        self.make_checkpoint(src, 1000 + run * 10 + seed)
        self.warm(*[os.path.join(src, f) for f in os.listdir(src)])
        return src

    def w_ckpt_hubfs(self, run):
        """A checkpoint directory: cp -r, then sync DIR."""
        ck_total = self.sz["ckpt_files"] * self.sz["ckpt_size"]
        src = self.w_checkpoint(run, 4)
        cache = self.new_cache()
        cp = 'cp -r "$SRC" "$MNT/ckpt-$RUN" && sync "$MNT/ckpt-$RUN"'
        with self.hubfs(NS + "/write", cache, token=WRITE_TOKEN, ro=False) as m:
            mk = m.mark0
            secs, _ = self.sh(cp, {"SRC": src, "MNT": m.mnt, "RUN": str(run)})
            w = self.hub.since(mk)
            label = "hubfs cp -r checkpoint (%d files, %s) + sync DIR" % (
                self.sz["ckpt_files"] + 1, human_bytes(ck_total))
            self.verify_upload("S8", label, "ckpt-%d" % run, src)
            s = self.record("S8", label, secs, "s", cp, mbps=ck_total / secs / 1e6,
                            **self.hubfs_sample(m, w))
            log("S8 %s: %.2fs (%d requests)" % (label, secs, s["requests"]))
        shutil.rmtree(cache)
        self.drop_objects(src)
        shutil.rmtree(src)

    def w_ckpt_curl(self, run):
        ck_total = self.sz["ckpt_files"] * self.sz["ckpt_size"]
        src = self.w_checkpoint(run, 5)
        files = [("ckpt-%d-curl/%s" % (run, f), os.path.join(src, f))
                 for f in sorted(os.listdir(src))]
        mk = self.hub.mark()
        secs, cmds = self.curl_upload("S8", "curl", files)
        w = traffic(self.hub.since(mk))
        label = "curl upload checkpoint + commit"
        self.verify_upload("S8", label, "ckpt-%d-curl" % run, src)
        self.record("S8", label, secs, "s", cmds, mbps=ck_total / secs / 1e6,
                    **tsample(w))
        self.drop_objects(src)
        shutil.rmtree(src)

    # --- environment ----------------------------------------------------
    def detect(self):
        self.can_drop = (os.geteuid() == 0 and
                         os.access("/proc/sys/vm/drop_caches", os.W_OK))
        if not self.can_drop:
            self.notrun[("S3", "all")] = (
                "dropping the page cache needs root and a writable "
                "/proc/sys/vm/drop_caches")
        self.js_ok = (not self.args.no_peers and shutil.which("node") and
                      os.path.exists(os.path.join(JS_DIR, "node_modules",
                                                  "@huggingface", "hub",
                                                  "dist", "index.mjs")))
        if not self.js_ok:
            self.notrun[("peers", "@huggingface/hub")] = (
                "disabled (--no-peers)" if self.args.no_peers else
                "node or tests/js/node_modules is missing (npm ci in tests/js)")
        self.hffs_reason = self.hffs_missing()

    def hffs_missing(self):
        if self.args.no_peers:
            return "disabled (--no-peers)"
        missing = []
        for mod, deb in (("fsspec", "python3-fsspec"), ("fuse", "python3-fusepy"),
                         ("huggingface_hub", "python3-huggingface-hub")):
            p = run_quiet([PY, "-c", "import " + mod])
            if p.returncode != 0:
                pol = run_quiet(["apt-cache", "policy", deb]).stdout.decode()
                m = re.search(r"Candidate:\s*(\S+)", pol)
                cand = m.group(1) if m else "(none)"
                missing.append("%s (Debian package %s: %s)" % (
                    mod, deb, "no candidate in this release" if cand == "(none)"
                    else "candidate %s, not installed" % cand))
        if missing:
            return "not installed: " + "; ".join(missing)
        p = run_quiet([PY, "-c", "import fsspec.fuse; from huggingface_hub "
                       "import HfFileSystem"])
        if p.returncode != 0:
            return "fsspec.fuse or HfFileSystem cannot be imported: " + \
                p.stderr.decode().strip().splitlines()[-1]
        return None

    def machine(self):
        def pc(name):
            p = run_quiet(["pkg-config", "--modversion", name])
            return p.stdout.decode().strip() or "?"

        def cmd_out(argv):
            try:
                p = run_quiet(argv)
                return (p.stdout or p.stderr).decode().strip().splitlines()[0]
            except (OSError, IndexError):
                return "?"
        osname = "?"
        try:
            with open("/etc/os-release") as f:
                m = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M)
                osname = m.group(1) if m else "?"
        except OSError:
            pass
        mem = proc_field("/proc/meminfo", "MemTotal")
        try:
            mem = "%.1f GiB" % (int(mem.split()[0]) / 1024 / 1024)
        except ValueError:
            pass
        fstype = "?"
        best = ""
        with open("/proc/mounts") as f:
            for line in f:
                dev, mp, typ = line.split()[:3]
                if (self.work + "/").startswith(mp.rstrip("/") + "/") and \
                        len(mp) >= len(best):
                    best, fstype = mp, typ
        js_ver = "?"
        try:
            with open(os.path.join(JS_DIR, "node_modules", "@huggingface",
                                   "hub", "package.json")) as f:
                js_ver = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            pass
        git = run_quiet(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]
                        ).stdout.decode().strip() or "?"
        dirty = run_quiet(["git", "-C", ROOT, "status", "--porcelain",
                           "--untracked-files=no", "--", "src", "include",
                           "cmake", "CMakeLists.txt"]).stdout.strip()
        return [
            ("Date (UTC)", datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")),
            ("CPU", proc_field("/proc/cpuinfo", "model name")),
            ("Cores", str(os.cpu_count())),
            ("Memory", mem),
            ("Kernel", platform.release()),
            ("OS", osname),
            ("File system of the work directory", fstype),
            ("Memory taken back by the machine", memory_taken_back()),
            ("hubfs", "%s, commit %s%s, %s build" % (
                cmd_out([self.hubfs_bin, "--version"]), git,
                " (with local changes)" if dirty else "", self.build_type)),
            ("libfuse3", pc("fuse3")),
            ("libcurl", pc("libcurl")),
            ("SQLite", pc("sqlite3")),
            ("jansson", pc("jansson")),
            ("OpenSSL (libcrypto)", pc("libcrypto")),
            ("curl", cmd_out(["curl", "--version"]).split(" (")[0]),
            ("Python (local Hub)", cmd_out([PY, "--version"])),
            ("Node", cmd_out(["node", "--version"]) if shutil.which("node") else "none"),
            ("@huggingface/hub", js_ver),
        ]

    # --- the run --------------------------------------------------------
    def run(self):
        a = self.args
        if a.work_dir:
            os.makedirs(a.work_dir, exist_ok=True)
            self.work = tempfile.mkdtemp(prefix="hubfs-bench-", dir=a.work_dir)
        else:
            self.work = tempfile.mkdtemp(prefix="hubfs-bench-")
        self.work = os.path.realpath(self.work)
        for d in ("scratch", "logs", "home", "local"):
            os.makedirs(self.path(d))
        self.data = self.path("hub-data")
        self.hub = None
        t_start = time.time()
        try:
            self.build()
            self.detect()
            self.base_env = dict(os.environ)
            self.base_env["BT"] = self.bt
            self.base_env["LC_ALL"] = "C"
            self.base_env["PWD"] = ROOT
            self.seed()
            biggest = max(self.sz["seq"] + [self.sz["write"]])
            self.cache_size = 3 * biggest if 3 * biggest > 10 * GiB else None
            self.hub = LocalHub(self.path(), self.data, [
                "--multipart-threshold", str(self.sz["multipart_threshold"]),
                "--multipart-chunk", str(self.sz["multipart_chunk"])])
            self.hub.start()
            self.expectations()
            self.machine_facts = self.machine()
            only = set(a.only.split(",")) if a.only else None
            steps = [("S1", self.s_seq), ("S4", self.s_random),
                     ("S5", self.s_model), ("S6", self.s_meta),
                     ("S7", self.s_small), ("S8", self.s_write)]
            for run in range(self.runs):
                for sc, fn in steps:
                    if only and sc not in only:
                        continue
                    log("run %d/%d: %s" % (run + 1, self.runs, sc))
                    try:
                        fn(run)
                    except Exception as e:
                        self.step_failed(sc, run, e)
        finally:
            for m in list(self.live):
                m.stop()
            if self.hub:
                self.hub.stop()
            self.elapsed = time.time() - t_start
        return self

    def cleanup(self):
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            log("kept the work directory %s" % self.work)


# --- The report ----------------------------------------------------------------

def row(*cells):
    """A Markdown table row; a | inside a cell is escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def verdict(r):
    """A summary row's result cell: a row without a target shows "-"."""
    if r["note"].startswith("not run"):
        return "not run (below)"
    if r["ok"] is None:
        return "n/a" if r["target"] else "-"
    return "pass" if r["ok"] else "**miss**"


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(v, unit=""):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if unit == "MiB":
        return "%.1f" % v
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and
                              abs(v) >= 100):
        return "%d" % v
    if v == 0:
        return "0"
    av = abs(v)
    if av >= 1000:
        s = "%.0f" % v
    elif av >= 100:
        s = "%.0f" % v
    elif av >= 10:
        s = "%.1f" % v
    elif av >= 1:
        s = "%.2f" % v
    else:
        s = "%.3f" % v
    return s


def spread(xs, unit=""):
    """median (min-max)"""
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return fmt(xs[0], unit)
    return "%s (%s-%s)" % (fmt(med(xs), unit), fmt(min(xs), unit),
                           fmt(max(xs), unit))


class Report:
    def __init__(self, suite):
        self.s = suite
        self.rows = []           # summary rows
        self.verdicts = []

    def vals(self, sc, label, key="value"):
        return [x[key] for x in self.s.samples.get((sc, label), [])
                if x.get(key) is not None]

    def find(self, sc, prefix):
        """The label of (sc, label) starting with prefix."""
        for (a, label) in self.s.samples:
            if a == sc and label.startswith(prefix):
                return label
        return None

    def add(self, sc, what, fig, fig_unit, base_name, base, ratio, target,
            ok, note="", reach=None):
        """fig and base are per-run lists (same length when paired); ratio
        is the per-run list of ratios.  reach, for a target this machine
        may not allow: (the best ratio it allows, per run; whether their
        median meets the target; the row that shows it)."""
        self.rows.append({
            "sc": sc, "what": what, "fig": fig, "unit": fig_unit,
            "base_name": base_name, "base": base, "ratio": ratio,
            "target": target, "ok": ok, "note": note, "reach": reach})

    @staticmethod
    def pairs(a, b, f):
        return [f(x, y) for x, y in zip(a, b) if y]

    def build(self):
        s = self.s
        hs_big = human_bytes(s.sz["seq"][-1])
        hs_small = human_bytes(s.sz["seq"][0])
        # S1
        ncpu = os.cpu_count() or 1
        for tool in ("cat", "dd bs=1M"):
            h = self.vals("S1", "hubfs %s, cold, %s" % (tool, hs_big))
            curl = self.vals("S1", "curl single stream, %s" % hs_big)
            pt = self.vals("S1", "passthrough %s, %s" % (tool, hs_big))
            slow = [min(a, b) for a, b in zip(curl, pt)]
            r = self.pairs(h, slow, lambda x, y: x / y)
            # A cold read through hubfs does at least what both baselines
            # do, curl's receiving and the passthrough's serving, and hashes
            # every byte besides; on ncpu cores that takes at least their
            # CPU time over ncpu, however well it overlaps.
            work = [a + b + c for a, b, c in zip(
                self.vals("S1", "curl single stream, %s" % hs_big, "busy"),
                self.vals("S1", "passthrough %s, %s" % (tool, hs_big), "busy"),
                self.vals("S1", "SHA-256 in memory, one core, %s" % hs_big))]
            best = [s.sz["seq"][-1] / (x / ncpu) / 1e6 for x in work if x > 0]
            rb = self.pairs(best, slow, lambda x, y: x / y)
            bound = "bound: the fastest cold %s this machine allows" % tool
            self.add("S1", "cold %s, %s (MB/s)" % (tool, hs_big), h, "MB/s",
                     "slower of curl single stream and passthrough", slow, r,
                     ">= 0.9", self.ge(r, 0.9),
                     reach=(rb, self.ge(rb, 0.9), bound) if rb else None)
            self.add("S1", bound + " (MB/s)", best, "MB/s",
                     "slower of curl single stream and passthrough", slow, rb,
                     "", None, "CPU-seconds of curl's single stream, of the "
                     "passthrough's %s and of SHA-256 over the same bytes, "
                     "over %d cores" % (tool, ncpu))
            r1 = self.pairs(h, curl, lambda x, y: x / y)
            self.add("S1", "cold %s vs curl single stream" % tool, h, "MB/s",
                     "curl single stream", curl, r1, "", None)
            r2 = self.pairs(h, pt, lambda x, y: x / y)
            self.add("S1", "cold %s vs minimal passthrough" % tool, h, "MB/s",
                     "passthrough %s" % tool, pt, r2, "", None)
        h = self.vals("S1", "hubfs cat, cold, %s" % hs_big)
        for lab in ("curl %d parallel ranges, %s" % (s.sz["parallel"], hs_big),
                    "@huggingface/hub downloadFile, %s" % hs_big,
                    "HfFileSystem via fsspec.fuse, cat, cold, %s" % hs_big):
            b = self.vals("S1", lab)
            if b:
                self.add("S1", "cold cat vs %s" % lab.rsplit(",", 1)[0], h,
                         "MB/s", lab, b, self.pairs(h, b, lambda x, y: x / y),
                         "", None)
            elif ("S1", lab) in s.notrun:
                self.add("S1", "cold cat vs %s" % lab.rsplit(",", 1)[0], h,
                         "MB/s", lab, [], [], "", None,
                         note="not run: " + s.notrun[("S1", lab)])
        # S2
        h = self.vals("S2", "hubfs cat, re-read on the same mount, %s" % hs_big)
        b = self.vals("S2", "local file cat, page cache, %s" % hs_big)
        r = self.pairs(h, b, lambda x, y: x / y)
        self.add("S2", "re-read while mounted, %s (MB/s)" % hs_big, h, "MB/s",
                 "local file, page cache", b, r, ">= 0.9", self.ge(r, 0.9))
        b = self.vals("S2", "passthrough -o kernel_cache cat, re-read, %s"
                      % hs_big)
        self.add("S2", "re-read vs the passthrough's re-read", h, "MB/s",
                 "passthrough -o kernel_cache, page cache", b,
                 self.pairs(h, b, lambda x, y: x / y), "", None)
        # S3
        h = self.vals("S3", "hubfs cat, remounted warm cache, page cache dropped, %s" % hs_big)
        b = self.vals("S3", "passthrough cat, page cache dropped, %s" % hs_big)
        r = self.pairs(h, b, lambda x, y: x / y)
        note = ""
        if ("S3", "all") in s.notrun:
            note = "not run: " + s.notrun[("S3", "all")]
        fetched = self.vals("S3", "hubfs cat, remounted warm cache, page "
                            "cache dropped, %s" % hs_big, "fetched")
        if fetched and not note:
            note = "bytes fetched from the Hub: %s" % "/".join(
                human_bytes(x) for x in fetched)
        self.add("S3", "warm remount, page cache dropped, %s (MB/s)" % hs_big,
                 h, "MB/s", "passthrough, page cache dropped", b, r, ">= 0.9",
                 self.ge(r, 0.9), note)
        # S4
        for bs in s.sz["rand"]:
            hb = human_bytes(bs)
            small = bs == 4 * KiB
            cold = "hubfs %s random reads, cold" % hb
            curl = "curl %s ranges, one connection" % hb
            pt = "passthrough %s random reads" % hb
            hc, cb = self.vals("S4", cold), self.vals("S4", curl)
            self.add("S4", "cold %s median latency (us)" % hb, hc, "us",
                     "curl range request, kept-alive connection", cb,
                     self.pairs(hc, cb, lambda x, y: x / y),
                     "<= 1000 us" if small else "",
                     self.le(hc, 1000) if small else None,
                     "p99 %s us" % spread(self.vals("S4", cold, "p99_us")))
            # The row on one CPU has no target of its own: it tells the
            # placement's share of the unpinned rows, which keep theirs.
            for phase, where in (("same mount", ""), ("new mount", ""),
                                 ("new mount, one CPU", ", one CPU")):
                warm = "hubfs %s random reads, warm, %s" % (hb, phase)
                hw, bw = self.vals("S4", warm), self.vals("S4", pt + where)
                judged = small and not where
                self.add("S4", "warm (%s) %s median latency (us)" % (phase, hb),
                         hw, "us", "passthrough pread" + where, bw,
                         self.pairs(hw, bw, lambda x, y: x / y),
                         "<= 50 us" if judged else "",
                         self.le(hw, 50) if judged else None,
                         "p99 %s us" % spread(self.vals("S4", warm, "p99_us")))
            amp = self.vals("S4", cold, "amplification")
            camp = self.vals("S4", curl, "amplification")
            self.add("S4", "cold %s read amplification (fetched / read)" % hb,
                     amp, "x", "curl ranges", camp,
                     self.pairs(amp, camp, lambda x, y: x / y),
                     "" if small else "<= 1.5",
                     None if small else self.le(amp, 1.5))
            for phase, hv, bv in (
                    ("cold", cold, curl),
                    ("warm, same mount", "hubfs %s random reads, warm, same "
                     "mount" % hb, pt)):
                x, y = self.vals("S4", hv, "mbps"), self.vals("S4", bv, "mbps")
                self.add("S4", "%s %s random-read throughput (MB/s)" % (phase, hb),
                         x, "MB/s", bv, y, self.pairs(x, y, lambda a, b: a / b),
                         "", None)
        # S5
        h = self.vals("S5", "hubfs model load, cold")
        b = self.vals("S5", "curl download + local load")
        r = self.pairs(h, b, lambda x, y: x / y)
        # As in S1: a cold load through hubfs does at least what curl's
        # download and the passthrough's load do, and hashes every byte.
        work = [a + b + c for a, b, c in zip(
            self.vals("S5", "curl download + local load", "download_busy"),
            self.vals("S5", "passthrough load", "busy"),
            self.vals("S5", "SHA-256 in memory, one core, %s" % human_bytes(
                s.expected.get("model", {}).get("bytes", 0))))]
        best = [x / ncpu for x in work]
        rb = self.pairs(best, b, lambda x, y: x / y)
        bound = "bound: the fastest cold load this machine allows"
        self.add("S5", "model load, cold (s)", h, "s",
                 "curl download + local load", b, r, "<= 1.0", self.le(r, 1.0),
                 reach=(rb, self.le(rb, 1.0), bound) if rb else None)
        self.add("S5", bound + " (s)", best, "s", "curl download + local load",
                 b, rb, "", None)
        h = self.vals("S5", "hubfs model load, warm")
        b = self.vals("S5", "local load, page cache")
        r = self.pairs(h, b, lambda x, y: x / y)
        # Every fault of a FUSE mapping that misses its page cache is a
        # round trip to the daemon: the passthrough's load is the floor.
        rp = self.pairs(self.vals("S5", "passthrough load"), b,
                        lambda x, y: x / y)
        self.add("S5", "model load, warm (s)", h, "s", "local load, page cache",
                 b, r, "<= 2.0", self.le(r, 2.0),
                 reach=(rp, self.le(rp, 2.0), "model load, warm vs passthrough "
                        "load") if rp else None)
        for lab in ("passthrough load",
                    "@huggingface/hub snapshotDownload + local load"):
            b = self.vals("S5", lab)
            if b:
                hh = self.vals("S5", "hubfs model load, %s" % (
                    "warm" if lab.startswith("passthrough") else "cold"))
                self.add("S5", "model load, %s vs %s" % (
                    "warm" if lab.startswith("passthrough") else "cold", lab),
                    hh, "s", lab, b, self.pairs(hh, b, lambda x, y: x / y), "",
                    None)
        # S6
        for ds in s.ds:
            n = len(ds["files"])
            entries = n + ds["dirs"]
            pages = -(-(entries) // PAGE_SIZE)
            local = self.vals("S6", "local find, %d files" % n)
            cold = "hubfs find, cold, %d files" % n
            reqs = self.vals("S6", cold, "requests")
            routes = [x.get("routes", {}) for x in s.samples.get(("S6", cold), [])]
            tree = [rt.get("tree", 0) for rt in routes]
            per_file = [sum(v for k, v in rt.items() if k in (
                "resolve", "raw", "paths-info", "resolve-cache")) for rt in routes]
            ok = None
            if routes:
                ok = all(pf == 0 and t <= pages + 1 for pf, t in zip(per_file, tree))
            self.add("S6", "cold find, %d files: tree listing requests" % n,
                     tree, "", "one recursive listing: %d page%s" % (
                         pages, "s" if pages > 1 else ""),
                     [pages] * len(tree), self.pairs(tree, [pages] * len(tree),
                                                     lambda x, y: x / y),
                     "<= %d, and no per-file request" % (pages + 1), ok,
                     "all Hub requests %s, per-file requests %s" % (
                         "/".join(map(str, reqs)) or "n/a",
                         "/".join(map(str, per_file)) or "n/a"))
            h = self.vals("S6", cold)
            self.add("S6", "cold find, %d files (entries/s)" % n, h, "entries/s",
                     "local disk", local, self.pairs(h, local, lambda x, y: x / y),
                     "", None)
            # A new mount starts without kernel inodes, so the remounted
            # find is held to the same tree on local disk in that state.
            dropped = self.vals("S6", "local find, dentries and inodes "
                                "dropped, %d files" % n)
            for phase, base_name, base in (
                    ("warm, same mount", "local disk", local),
                    ("warm, remounted", "local disk, dentries and inodes "
                     "dropped", dropped)):
                lab = "hubfs find, %s, %d files" % (phase, n)
                h = self.vals("S6", lab)
                r = self.pairs(h, base, lambda x, y: x / y)
                self.add("S6", "%s find, %d files (entries/s)" % (phase, n), h,
                         "entries/s", base_name, base, r, ">= 0.5",
                         self.ge(r, 0.5))
            lab = "hubfs find, warm, remounted, %d files" % n
            h = self.vals("S6", lab)
            self.add("S6", "warm, remounted find vs local disk, inodes cached, "
                     "%d files" % n, h, "entries/s", "local disk", local,
                     self.pairs(h, local, lambda x, y: x / y), "", None)
        # S7
        n = len(s.ds[-1]["files"]) if s.ds else 0
        h = self.vals("S7", "hubfs find + xargs -P cat, cold, %d files" % n)
        b = self.vals("S7", "curl every file, %d parallel" % s.sz["parallel"])
        r = self.pairs(h, b, lambda x, y: x / y)
        self.add("S7", "read %d small files, cold (s)" % n, h, "s",
                 "curl every file, %d parallel" % s.sz["parallel"], b, r,
                 "<= 1.5", self.le(r, 1.5))
        b = self.vals("S7", "@huggingface/hub snapshotDownload")
        if b:
            self.add("S7", "read %d small files vs snapshotDownload" % n, h, "s",
                     "@huggingface/hub snapshotDownload", b,
                     self.pairs(h, b, lambda x, y: x / y), "", None)
        # S8
        hs = human_bytes(s.sz["write"])
        h = self.vals("S8", "hubfs write %s + fsync (one commit)" % hs)
        b = self.vals("S8", "curl upload %s + commit" % hs)
        r = self.pairs(h, b, lambda x, y: x / y)
        # The upload cannot start before the file is whole (the LFS batch
        # call names its sha256), so hubfs takes at least the write through
        # FUSE and the upload, one after the other.
        p = self.vals("S8", "passthrough write %s + fsync" % hs)
        fl = self.pairs(p, b, lambda x, y: x + y)
        rf = self.pairs(fl, b, lambda x, y: x / y)
        floor = "floor: passthrough write + curl upload"
        self.add("S8", "write %s + fsync (s)" % hs, h, "s",
                 "curl upload + commit", b, r, "<= 1.25", self.le(r, 1.25),
                 reach=(rf, self.le(rf, 1.25), floor) if rf else None)
        self.add("S8", "write %s + fsync vs minimal passthrough (s)" % hs, h,
                 "s", "passthrough dd + fsync to local disk", p,
                 self.pairs(h, p, lambda x, y: x / y), "", None)
        self.add("S8", floor + " (s)", fl, "s", "curl upload + commit", b, rf,
                 "", None)
        lab = self.find("S8", "hubfs cp -r checkpoint")
        h = self.vals("S8", lab) if lab else []
        b = self.vals("S8", "curl upload checkpoint + commit")
        r = self.pairs(h, b, lambda x, y: x / y)
        self.add("S8", "cp -r checkpoint + sync DIR (s)", h, "s",
                 "curl upload + commit", b, r, "<= 1.25", self.le(r, 1.25))
        # S9
        for sc, _ in SCENARIOS:
            if sc == "S9":
                continue
            rss = [x["rss"] / MiB for (a, _), xs in s.samples.items() if a == sc
                   for x in xs if x.get("rss")]
            if rss:
                self.add("S9", "peak RSS of hubfs in %s (MiB)" % sc, rss, "MiB",
                         "", [], [], "< 128 MiB", all(v < 128 for v in rss))
        # S10
        ratio_sz = s.sz["seq"][1] / s.sz["seq"][0]
        hb = self.vals("S1", "hubfs cat, cold, %s" % hs_big, "secs")
        hsm = self.vals("S1", "hubfs cat, cold, %s" % hs_small, "secs")
        cb = self.vals("S1", "curl single stream, %s" % hs_big, "secs")
        csm = self.vals("S1", "curl single stream, %s" % hs_small, "secs")
        pb = self.vals("S1", "passthrough cat, %s" % hs_big, "secs")
        psm = self.vals("S1", "passthrough cat, %s" % hs_small, "secs")
        g = self.pairs(hb, hsm, lambda x, y: x / y)
        cg = self.pairs(cb, csm, lambda x, y: x / y)
        pg = self.pairs(pb, psm, lambda x, y: x / y)
        lin = "<= %g (linear + 25%%)" % (ratio_sz * 1.25)
        self.add("S10", "cold cat time, %s / %s (size x%g)" % (hs_big, hs_small,
                                                              ratio_sz),
                 g, "x", "curl single stream, same sizes", cg,
                 self.pairs(g, cg, lambda x, y: x / y), lin,
                 self.le(g, ratio_sz * 1.25))
        self.add("S10", "cold cat time growth vs the passthrough's (S1)", g,
                 "x", "passthrough cat, same sizes", pg,
                 self.pairs(g, pg, lambda x, y: x / y), "", None)
        # The same reads with memory in the same state at both sizes.
        def used(what, hs):
            return self.vals("S10", "%s, memory just used, %s" % (what, hs),
                             "secs")
        g = self.pairs(used("hubfs cat, cold", hs_big),
                       used("hubfs cat, cold", hs_small), lambda x, y: x / y)
        pg = self.pairs(used("passthrough cat", hs_big),
                        used("passthrough cat", hs_small), lambda x, y: x / y)
        self.add("S10", "cold cat time, %s / %s, memory just used" % (
                     hs_big, hs_small), g, "x",
                 "passthrough cat, same sizes and memory", pg,
                 self.pairs(g, pg, lambda x, y: x / y), lin,
                 self.le(g, ratio_sz * 1.25))
        if len(s.ds) == 2:
            n0, n1 = len(s.ds[0]["files"]), len(s.ds[1]["files"])
            e0 = n0 + s.ds[0]["dirs"]
            e1 = n1 + s.ds[1]["dirs"]
            ratio_n = e1 / e0

            def secs(lab):
                return self.vals("S6", lab, "secs")
            g = self.pairs(secs("hubfs find, cold, %d files" % n1),
                           secs("hubfs find, cold, %d files" % n0),
                           lambda x, y: x / y)
            lg = self.pairs(secs("local find, %d files" % n1),
                            secs("local find, %d files" % n0), lambda x, y: x / y)
            self.add("S10", "cold find time, %d / %d files (entries x%.2g)" % (
                n1, n0, ratio_n), g, "x", "local find, same trees", lg,
                self.pairs(g, lg, lambda x, y: x / y),
                "<= %.3g (linear + 25%%)" % (ratio_n * 1.25),
                self.le(g, ratio_n * 1.25))
        return self

    @staticmethod
    def ge(xs, t):
        return None if not xs else med(xs) >= t

    @staticmethod
    def le(xs, t):
        return None if not xs else med(xs) <= t

    # --- rendering ------------------------------------------------------
    def markdown(self, invocation):
        s = self.s
        out = []
        w = out.append
        w("# hubfs performance")
        w("")
        w("<!-- Generated by tests/bench/run.sh; do not edit by hand. -->")
        w("")
        if s.smoke:
            w("> **Smoke run, not representative.** These figures come from "
              "`tests/bench/run.sh --smoke`: tiny sizes that only prove the "
              "suite works end to end. Fixed costs (process start, mount, "
              "connection set-up) dominate them, so neither the figures nor "
              "the pass/miss column say anything about hubfs's performance. "
              "A full run (`tests/bench/run.sh`) replaces this file.")
            w("")
        w("Generated by `%s` in %.0f s: %d run%s of every scenario, "
          "interleaved, against the bundled local Hub (`tests/localhub`) on "
          "127.0.0.1. Every figure is the median of the runs with the "
          "minimum and maximum in parentheses; each ratio is computed run by "
          "run against a baseline measured in the same run, then summarised "
          "the same way." % (invocation, s.elapsed, s.runs,
                             "" if s.runs == 1 else "s"))
        w("")
        w("## How to run")
        w("")
        w("```")
        w("sudo tests/bench/run.sh                 # the full run: 3 runs at scale 1, writes docs/PERFORMANCE.md")
        w("sudo tests/bench/run.sh --smoke         # tiny sizes, one run, under a minute")
        w("sudo tests/bench/run.sh --runs 5 --out report.md --json results.json")
        w("```")
        w("")
        w("The command builds hubfs in release mode in its own build "
          "directory (`--build-dir`, by default under the system's temporary "
          "directory, never in the source tree), compiles the suite's "
          "helpers there, seeds the local Hub with deterministic data, runs "
          "every scenario `--runs` times, interleaved, and writes this file "
          "(`--out`) and, with `--json FILE`, every sample. Other options: "
          "`--scale F` multiplies every size (the full run is scale 1, "
          "`--smoke` is 1/256 with floors); `--only S1,S6` runs some "
          "scenarios; `--hubfs PATH` uses a daemon already built; "
          "`--work-dir` (the full run needs about 35 GB there, which the "
          "suite checks before it starts, and takes "
          "roughly 40 minutes on 2 cores); `--keep`; `--no-peers`. It needs "
          "root, FUSE, curl, git, cmake, a C compiler with libfuse3's "
          "headers, and node with `tests/js/node_modules` for the "
          "@huggingface/hub peer. The exit status is 1 when a byte check "
          "fails or a scenario breaks, 2 when the work directory lacks the "
          "space; a missed target does not change it.")
        w("")
        w("The full run is never part of the test suite. "
          "`tests/bench/test_bench_smoke.py` runs `--smoke` against the "
          "daemon in `$HUBFS_BUILD_DIR` whenever `pytest tests` runs, so the "
          "suite keeps working; it checks that every scenario yields numbers "
          "and every byte check passes, and asserts no target.")
        w("")
        w("## Machine")
        w("")
        w("| | |")
        w("|---|---|")
        for k, v in s.machine_facts:
            w(row(k, v))
        w("")
        w("## Sizes")
        w("")
        sz = s.sz
        w("| parameter | value |")
        w("|---|---|")
        w("| sequential files (LFS) | %s |" % ", ".join(human_bytes(x) for x in sz["seq"]))
        w("| datasets (small files, regular) | %s files |" % ", ".join(
            str(len(d["files"])) for d in s.ds))
        w("| random reads | %s |" % ", ".join("%d x %s" % (c, human_bytes(b))
                                              for b, c in sz["rand"].items()))
        w("| model | %d safetensors shards of %s, %d loading processes |" % (
            sz["shards"], human_bytes(sz["shard_size"]), sz["procs"]))
        w("| write | one file of %s; a checkpoint of %d x %s + config.json |" % (
            human_bytes(sz["write"]), sz["ckpt_files"], human_bytes(sz["ckpt_size"])))
        w("| parallelism (curl ranges and transfers, xargs -P) | %d |" % sz["parallel"])
        w("| local Hub multipart threshold / part size | %s / %s |" % (
            human_bytes(sz["multipart_threshold"]), human_bytes(sz["multipart_chunk"])))
        w("")
        w("## Summary")
        w("")
        fails = [c for c in s.checks if not c[2]]
        w("Byte checks: %s." % (
            "all %d passed" % len(s.checks) if not fails else
            "**%d of %d FAILED**" % (len(fails), len(s.checks))))
        if s.errors:
            w("")
            w("**Errors:**")
            w("")
            for sc, e in s.errors:
                w("- %s: %s" % (sc, e.splitlines()[0][:300]))
        w("")
        w("Ratio: hubfs's figure divided by the baseline's, run by run. "
          "Higher is better for MB/s and entries/s; lower is better for "
          "seconds, latency, amplification, RSS and growth.")
        w("")
        w("| scenario | measure | hubfs | baseline | baseline figure | ratio | target | result |")
        w("|---|---|---|---|---|---|---|---|")
        for r in self.rows:
            w(row(r["sc"], r["what"], spread(r["fig"], r["unit"]),
                  r["base_name"] or "-",
                  spread(r["base"], r["unit"]) if r["base"] else "-",
                  spread(r["ratio"]) if r["ratio"] else "-",
                  r["target"] or "-", verdict(r)))
        misses = [r for r in self.rows if r["ok"] is False]
        w("")
        if misses:
            w("Missed targets%s:" % (" (smoke sizes: not meaningful)"
                                     if s.smoke else ""))
            w("")
            for r in misses:
                reach = ""
                if r["reach"] and r["reach"][1] is False:
                    reach = (" Out of reach in this run: the best this machine "
                             "allows is a ratio of %s (row \"%s\")." % (
                                 spread(r["reach"][0]), r["reach"][2]))
                w("- %s, %s: hubfs %s, ratio %s; target %s.%s" % (
                    r["sc"], r["what"], spread(r["fig"], r["unit"]),
                    spread(r["ratio"]) if r["ratio"] else "-", r["target"],
                    reach))
        else:
            w("No target missed.")
        w("")
        w("Targets: sequential reads at least 0.9 of the slower of curl "
          "and the minimal passthrough (S1), of the page cache (S2) and of "
          "the passthrough (S3); S4's latency and amplification limits; "
          "S6's one listing pass and stat rate; writes at least 0.8 of "
          "curl's upload plus commit, i.e. at most 1.25x its time (S8); "
          "peak RSS under 128 MiB (S9). The suite adds its own where no "
          "number is set: a lazy model load should not lose to downloading "
          "first (S5); reading many small files may cost at most 1.5x curl "
          "fetching them (S7); time should grow at most 25% faster than "
          "the data (S10).")
        notes = [(k, v) for k, v in s.notrun.items()]
        if notes:
            w("")
            w("Not run:")
            w("")
            for (sc, lab), why in notes:
                w("- %s %s: %s" % (sc if sc != "peers" else "peer", lab, why))
        # Details.
        for sc, title in SCENARIOS:
            w("")
            w("## %s. %s" % (sc, title))
            w("")
            w(DESCRIPTIONS[sc](s))
            items = [(lab, xs) for (a, lab), xs in s.samples.items() if a == sc]
            if sc in ("S9", "S10"):
                rows = [r for r in self.rows if r["sc"] == sc]
                if rows:
                    w("")
                    w("| measure | hubfs | baseline | ratio | target | result |")
                    w("|---|---|---|---|---|---|")
                    for r in rows:
                        w(row(r["what"], spread(r["fig"], r["unit"]),
                              spread(r["base"]) if r["base"] else "-",
                              spread(r["ratio"]) if r["ratio"] else "-",
                              r["target"] or "-", verdict(r)))
                if not items:
                    continue
            if not items:
                w("")
                w("No figures (see errors above).")
                continue
            w("")
            w("| figure | value | n | Hub requests | CDN requests | bytes fetched | peak RSS | extra |")
            w("|---|---|---|---|---|---|---|---|")
            for lab, xs in items:
                unit = xs[0]["unit"]

                def vals(key):
                    return [x[key] for x in xs if x.get(key) is not None]
                hubr, cdnr, fet = (vals("hub_requests"), vals("cdn_requests"),
                                   vals("fetched"))
                rss = [v / MiB for v in vals("rss")]
                extra = []
                for key, name, u in (("p99_us", "p99", "us"), ("mbps", "", "MB/s"),
                                     ("amplification", "amplification", "x"),
                                     ("secs", "time", "s"),
                                     ("busy", "machine busy", "CPU-s"),
                                     ("large_pct", "in large folios", "%"),
                                     ("touched_mib", "memory touched before",
                                      "MiB"),
                                     ("download_secs", "download", "s"),
                                     ("download_busy", "download: machine busy",
                                      "CPU-s"),
                                     ("files_per_s", "", "files/s")):
                    v = vals(key)
                    if v and not (key == "secs" and unit == "s"):
                        extra.append(("%s %s %s" % (name, spread(v), u)).strip())
                w(row(lab, "%s %s" % (spread(vals("value")), unit), len(xs),
                      spread(hubr) if hubr else "-",
                      spread(cdnr) if cdnr else "-",
                      human_bytes(int(med(fet))) if fet else "-",
                      "%s MiB" % spread(rss, "MiB") if rss else "-",
                      "; ".join(extra) or "-"))
            w("")
            w("Commands:")
            w("")
            w("```")
            for lab, xs in items:
                cmds = s.commands.get((sc, lab), [])
                w("# " + lab)
                for c in cmds:
                    w(c)
            w("```")
        w("")
        w("## Variables in the commands")
        w("")
        w("| variable | meaning |")
        w("|---|---|")
        for k, v in VARIABLES:
            w("| `%s` | %s |" % (k, v))
        w("")
        w("hubfs runs as `hubfs -f SOURCE $MNT -o cache_dir=DIR,ro` with "
          "`HF_ENDPOINT=$HUB` and a read token (writes: a write token, no `ro`); "
          "the passthrough as `passthrough -f $PT -o source=$LOCAL`; for "
          "the rows \"one CPU\" each runs under `taskset -c %d`, as does "
          "its reader. Mounting is not timed. Every cold run starts with an empty cache directory "
          "and a new mount; the local Hub's files are in the page cache, as "
          "they are for curl. Requests and bytes come from the local Hub's "
          "request log (`--request-log`): for the first command on a mount, "
          "every request from the start of the mount to the end of the "
          "command; for a later one, those made during the command. Bytes "
          "are response bodies (for writes: what the Hub answered, not what "
          "was uploaded). Peak RSS is the daemon's VmHWM from /proc at "
          "unmount." % PIN_CPU)
        w("")
        # What the profiles showed and why the defaults are what they are:
        # written by hand, kept beside the suite, carried into every report.
        findings = os.path.join(BENCH, "findings.md")
        if os.path.exists(findings):
            with open(findings) as f:
                w(f.read().rstrip("\n"))
            w("")
        return "\n".join(out)

    def as_json(self, invocation):
        s = self.s
        return {
            "invocation": invocation, "smoke": s.smoke, "runs": s.runs,
            "sizes": {k: (v if not isinstance(v, dict) else
                          {str(a): b for a, b in v.items()})
                      for k, v in s.sz.items()},
            "machine": dict(s.machine_facts),
            "samples": [{"scenario": sc, "label": lab, "samples": xs}
                        for (sc, lab), xs in s.samples.items()],
            "summary": self.rows,
            "checks": [{"scenario": a, "label": b, "ok": c, "detail": d}
                       for a, b, c, d in s.checks],
            "errors": [{"scenario": a, "error": b} for a, b in s.errors],
            "not_run": [{"scenario": a, "label": b, "reason": c}
                        for (a, b), c in s.notrun.items()],
        }


DESCRIPTIONS = {
    "S1": lambda s: (
        "A cold sequential read of a large LFS file with `cat` and with "
        "`dd bs=1M`, at two sizes. Baselines: curl fetching the same bytes "
        "from the same local Hub (one stream through `/resolve/` and its "
        "redirect, and %d parallel ranges of the signed CDN URL), the "
        "minimal libfuse passthrough reading the same bytes from a "
        "page-cached local file (the FUSE ceiling of this machine), the "
        "local file itself, and the peers. The timed read writes to "
        "/dev/null; the bytes are then hashed on the same mount (the pages "
        "the timed read brought in) and compared with the seeded file. "
        "`machine busy` is the CPU time all cores spent outside idle and "
        "I/O wait during a command (`/proc/stat`). A cold read through "
        "hubfs does at least what curl's single stream does (the local Hub "
        "sending, the socket receiving) and what the passthrough does (the "
        "reader, the FUSE replies, a copy of every byte out of or into a "
        "file's pages), and checks every byte's SHA-256 besides, which "
        "neither does; so on %d cores it cannot take less than the sum of "
        "those CPU times over %d, however well they overlap. The row "
        "\"bound\" is that limit, run by run: a ratio above it is out of "
        "reach here." % (
            s.sz["parallel"], os.cpu_count() or 1, os.cpu_count() or 1)),
    "S2": lambda s: (
        "The same file read again on the same mount, after the cold read: "
        "hubfs keeps the kernel's page cache across opens, so this should "
        "run at page-cache speed. Baseline: `cat` of the local file from the "
        "page cache. The FUSE ceiling: the minimal passthrough with "
        "`-o kernel_cache` (it keeps its page cache across opens, as hubfs "
        "does), read, checked and then timed as hubfs's file is (the "
        "kernel moves a page to its active list on its second use, at a "
        "cost per page). `in large folios` is the share of the "
        "file's cached pages that belong to large folios (`benchtool "
        "folios`): copying out of the page cache costs per folio."),
    "S3": lambda s: (
        "A new mount over the warm cache directory of a cold run, after "
        "`echo 3 > /proc/sys/vm/drop_caches`: the bytes come from hubfs's "
        "cache on disk, with no request for content. Baseline: the "
        "passthrough over the local file, page cache dropped the same way. "
        "The two read back to back, after the other sequential figures, "
        "and take turns going first (hubfs in odd runs): on this machine "
        "the first read after a drop fills memory the host has taken back, "
        "and runs slower whichever it is."),
    "S4": lambda s: (
        "`benchtool rand`: preads at random 4 KiB-aligned offsets of the "
        "largest file, one process, no readahead hints; latency of each read "
        "(median and p99), throughput, and read amplification (bytes the "
        "CDN sent / bytes read). Cold: an empty cache and a new mount. Warm, "
        "same mount: the same reads again on that mount, after dropping the "
        "file's pages from the page cache (`-D`: POSIX_FADV_DONTNEED), so "
        "each read reaches hubfs and its cache. Warm, new mount: the same "
        "reads on a new mount over that cache (hubfs checks a block's CRC at "
        "its first use by a mount). Warm, new mount, one CPU: the same "
        "again with the daemon and the reader both run by `taskset -c %d` "
        "(each FUSE read wakes the daemon, then the reader; this row leaves "
        "out what a wake-up on another CPU costs on the machine, and has no "
        "target of its own). Baselines: curl fetching the same ranges "
        "over one kept-alive connection (cold), the passthrough and the "
        "local file (warm), the passthrough also on that one CPU. The bytes "
        "read are hashed and compared with the "
        "same reads of the local file." % PIN_CPU),
    "S5": lambda s: (
        "%d processes each mmap every shard of a synthetic safetensors "
        "model (%d x %s, `localhub.py seed-model`), parse its header (8-byte "
        "length, JSON with data_offsets) and touch every byte of their share "
        "of the tensors (tensor i goes to process i mod %d), hashing them. "
        "Cold: empty cache; warm: a new mount over the filled cache. "
        "Baselines: curl downloading the repository (parallel transfers) "
        "then the same load from local disk; the local load alone (page "
        "cache); the passthrough; the official JS client's snapshotDownload "
        "then the local load. The row \"bound\" is the least time a cold "
        "load through hubfs can take here, computed as in S1: the CPU time "
        "of curl's download, of the passthrough's load and of SHA-256 over "
        "the model's bytes, over the cores." % (s.sz["procs"], s.sz["shards"],
                                  human_bytes(s.sz["shard_size"]),
                                  s.sz["procs"])),
    "S6": lambda s: (
        "`find` printing type, size and path of every entry (so it stats "
        "each one) over a dataset repository of small files "
        "(`localhub.py seed-dataset`), at two sizes: cold (empty cache, new "
        "mount), warm on the same mount, and warm on a new mount over the "
        "filled cache. The listing is compared with the same tree on local "
        "disk (directory sizes aside). Hub requests should be one recursive "
        "tree listing (pages of %d entries), with no request per file. "
        "Baseline: the same `find` over the tree on local disk, run once "
        "before the timed one, so that the kernel holds its dentries and "
        "inodes. A new mount starts with none of its own, however warm "
        "hubfs's cache, so the warm find on a new mount is held to the "
        "local tree in the same state: its blocks in memory, the kernel's "
        "dentries and inodes dropped first (`echo 2 > "
        "/proc/sys/vm/drop_caches`); its ratio to the local tree with "
        "inodes cached is shown too." % PAGE_SIZE),
    "S7": lambda s: (
        "Every file of the larger dataset read with `cat` through "
        "`xargs -P %d`, cold (the time includes the listing), the output "
        "checked line by line against the local tree (an order-independent "
        "digest). Baseline: one curl process fetching every file through "
        "`/resolve/`, %d transfers in parallel over kept-alive connections "
        "(the file list is known beforehand), into a local directory; peer: "
        "snapshotDownload." % (s.sz["parallel"], s.sz["parallel"])),
    "S8": lambda s: (
        "A writable mount of an empty repository. One file of %s written "
        "with `dd conv=fsync` (fsync returns once the commit is on the "
        "branch), and a checkpoint directory copied with `cp -r` then "
        "`sync DIR`. Every write has new bytes, so no upload is skipped. "
        "Baseline: curl doing the same protocol by hand with the hashes "
        "computed beforehand: preupload, LFS batch, the PUT to the upload "
        "URL (multipart parts 4 at a time above the local Hub's multipart "
        "threshold), the completion and verify calls, then the commit. The "
        "branch is then checked to hold every file with the right sha256 "
        "(LFS) or blob id. The FUSE ceiling of the write: the same `dd` "
        "through the minimal passthrough (`-o writable`) into a local "
        "directory. With the LFS protocol the upload starts only once the "
        "file is complete (the batch call names its sha256), so that write "
        "plus curl's upload is the floor of hubfs's time. hubfs and curl "
        "take turns going first from run to run (the passthrough is always "
        "second): the first large write of a run lands in memory the "
        "machine has not used for a while, which costs more on this "
        "machine." %
        human_bytes(s.sz["write"])),
    "S9": lambda s: (
        "hubfs's peak resident memory (VmHWM) over every mount of each "
        "scenario, read from /proc/PID/status before unmounting. Target: "
        "below 128 MiB whatever the file sizes."),
    "S10": lambda s: (
        "How time grows with size: the cold `cat` of S1 at %s and %s, and "
        "the cold `find` of S6 at %s files. Figure: the time at the larger "
        "size over the time at the smaller; baseline: the same growth for "
        "curl, the passthrough and local disk. A cold read fills new "
        "page-cache pages. On a virtual machine that gives the memory it "
        "frees back to its host, a page used for the first time in a while "
        "costs a fault on the host, and a large read finds fewer recently "
        "used pages than a small one, so its time grows faster than its "
        "size whatever the file system (see \"Scale (S10)\" below for this "
        "machine). The cat is therefore measured again, hubfs and the "
        "passthrough in turns, each right after `benchtool touch` has used "
        "and freed 2.5 times the file's size plus 64 MiB (at most the free "
        "memory less 512 MiB; the figure says how much it used), so that "
        "memory is in the same state at both sizes." % (
            human_bytes(s.sz["seq"][0]), human_bytes(s.sz["seq"][1]),
            " and ".join(str(len(d["files"])) for d in s.ds))),
}


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="tests/bench/run.sh",
        description="hubfs benchmark suite: writes docs/PERFORMANCE.md")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes and one run (CI); not representative")
    p.add_argument("--runs", type=int, help="runs of every scenario "
                   "(default 3; 1 with --smoke)")
    p.add_argument("--scale", type=float, help="size factor (default 1; "
                   "1/256 with --smoke)")
    p.add_argument("--out", help="the Markdown report (default "
                   "docs/PERFORMANCE.md)")
    p.add_argument("--json", help="also write every figure as JSON here")
    p.add_argument("--hubfs", help="use this built hubfs instead of building "
                   "a Release build")
    p.add_argument("--build-dir", help="where to build (default: a directory "
                   "under the system's temporary directory)")
    p.add_argument("--work-dir", help="where the data, caches and mounts go "
                   "(default: the system's temporary directory)")
    p.add_argument("--only", help="comma-separated scenarios: S1 (with S2, S3, "
                   "S10), S4, S5, S6, S7, S8")
    p.add_argument("--no-peers", action="store_true",
                   help="skip @huggingface/hub and HfFileSystem")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args(argv)
    if a.runs is None:
        a.runs = 1 if a.smoke else 3
    if a.scale is None:
        a.scale = 1 / 256 if a.smoke else 1.0
    if a.runs < 1 or a.scale <= 0:
        p.error("--runs and --scale must be positive")
    out = a.out or os.path.join(ROOT, "docs", "PERFORMANCE.md")
    inv = ["tests/bench/run.sh"]
    if a.smoke:
        inv.append("--smoke")
    if a.runs != (1 if a.smoke else 3):
        inv += ["--runs", str(a.runs)]
    if a.scale != (1 / 256 if a.smoke else 1.0):
        inv += ["--scale", "%g" % a.scale]
    if a.only:
        inv += ["--only", a.only]
    if a.no_peers:
        inv.append("--no-peers")
    invocation = " ".join(inv)

    # SIGTERM and SIGHUP unwind like Ctrl-C: every mount, the local Hub
    # and the work directory are cleaned up on the way out.  A signal
    # ignored on entry (nohup) stays ignored, and a second one does not
    # cut the clean-up short.
    sigs = [sig for sig in (signal.SIGTERM, signal.SIGHUP)
            if signal.getsignal(sig) is not signal.SIG_IGN]

    def on_signal(signum, frame):
        for sig in sigs:
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)
    for sig in sigs:
        signal.signal(sig, on_signal)
    suite = Suite(a)
    where = a.work_dir or tempfile.gettempdir()
    free = shutil.disk_usage(where if os.path.isdir(where) else
                             os.path.dirname(os.path.abspath(where))).free
    if free < space_needed(suite.sz):
        log("%s has %s free; a run at these sizes needs about %s there "
            "(--work-dir elsewhere, or a smaller --scale)" % (
                where, human_bytes(free), human_bytes(space_needed(suite.sz))))
        return 2
    try:
        suite.run()
        rep = Report(suite).build()
        text = rep.markdown(invocation)
        with open(out + ".tmp", "w") as f:
            f.write(text)
        os.replace(out + ".tmp", out)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rep.as_json(invocation), f, indent=1, default=str)
        log("wrote %s" % out)
        fails = [c for c in suite.checks if not c[2]]
        if fails or suite.errors:
            log("%d byte checks failed, %d errors" % (len(fails),
                                                      len(suite.errors)))
            return 1
        return 0
    finally:
        suite.cleanup()


if __name__ == "__main__":
    sys.exit(main())
