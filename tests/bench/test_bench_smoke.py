"""The benchmark suite's smoke run: `tests/bench/run.sh --smoke` (tiny
sizes, one run) against the hubfs under test, into a temporary report.

It checks that the suite still works end to end: every scenario produced
numbers, every byte check passed, the report says it is a smoke run and
names no machine path.  It asserts no performance target: the full run
is never a timed test."""

import json
import math
import os
import re
import shutil
import subprocess
import tempfile

import pytest

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(BENCH))
PY = "/usr/bin/python3"
SCENARIOS = ["S%d" % i for i in range(1, 11)]


def finite(xs):
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def test_bench_smoke(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the benchmarks need root (FUSE mounts, drop_caches)")
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        pytest.skip("no FUSE")
    build = os.environ.get("HUBFS_BUILD_DIR", os.path.join(ROOT, "build"))
    hubfs = os.path.join(build, "hubfs")
    if not os.path.exists(hubfs):
        pytest.skip("hubfs is not built (%s)" % hubfs)
    out = tmp_path / "PERFORMANCE.md"
    res_file = tmp_path / "results.json"
    p = subprocess.run(
        [PY, os.path.join(BENCH, "bench.py"), "--smoke", "--hubfs", hubfs,
         "--build-dir", str(tmp_path / "build"), "--work-dir",
         str(tmp_path / "work"), "--out", str(out), "--json", str(res_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=540)
    log = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, log[-6000:]
    md = out.read_text()
    res = json.loads(res_file.read_text())

    assert "Smoke run, not representative" in md
    assert res["smoke"] is True
    assert str(tmp_path) not in md and tempfile.gettempdir() + "/" not in md
    for sc in SCENARIOS:
        assert "\n## %s. " % sc in md, sc

    # Every byte check passed, and there were some in every scenario that
    # reads or writes.
    assert res["checks"] and all(c["ok"] for c in res["checks"]), [
        c for c in res["checks"] if not c["ok"]]
    assert not res["errors"], res["errors"]
    checked = {c["scenario"] for c in res["checks"]}
    want = {"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8"}
    if any(n["scenario"] == "S3" for n in res["not_run"]):
        want.discard("S3")      # no drop_caches here (a container)
    assert checked >= want
    assert "Byte checks: all %d passed." % len(res["checks"]) in md

    # Every scenario has numbers: each summary row with a target has its
    # figure, its baseline (if it has one) and its ratio, all finite.
    rows = res["summary"]
    for sc in SCENARIOS:
        mine = [r for r in rows if r["sc"] == sc]
        assert mine, sc
        assert any(r["fig"] for r in mine) or all(
            r["note"].startswith("not run") for r in mine), sc
    for r in rows:
        assert finite(r["fig"]) and finite(r["base"]) and finite(r["ratio"]), r
        if r["note"].startswith("not run"):
            continue
        assert r["fig"], r
        if r["target"]:
            if r["base_name"]:
                assert r["base"] and r["ratio"], r
            assert r["ok"] in (True, False), r
    for s in res["samples"]:
        vals = [x["value"] for x in s["samples"]]
        assert vals and finite(vals), s["label"]
    table = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert "nan" not in table.lower()
    for line in table.splitlines():
        if line.startswith("| S") and "not run" not in line:
            assert "n/a" not in line, line


def test_bench_refuses_a_work_dir_without_the_space(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs",
                    str(small)], check=True)
    try:
        p = subprocess.run(
            [PY, os.path.join(BENCH, "bench.py"), "--smoke", "--hubfs",
             "/nonexistent", "--work-dir", str(small), "--out",
             str(tmp_path / "PERFORMANCE.md")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        left = os.listdir(small)
    finally:
        subprocess.run(["umount", str(small)], check=True)
    log = p.stdout.decode("utf-8", "replace")
    # Before building or seeding anything, with what it needs.
    assert p.returncode == 2, log
    assert re.search(r"has [0-9.]+ [KM]iB free; a run at these sizes needs "
                     r"about [0-9.]+ GiB there", log), log
    assert left == [] and not (tmp_path / "PERFORMANCE.md").exists()
