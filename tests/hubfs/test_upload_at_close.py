"""Uploads at close: a large file written and closed has its LFS object
sent before any commit asks for it; the commit then sends nothing but
the commit call.  A file written again, or removed, while its upload runs
stops it, and what is committed is always what the file holds."""

import os
import subprocess
import threading
import time

import pytest

from conftest import HUBFS, WRITE, real_bytes
from writeutil import commits, final_metric, fsync, no_faults, read, repo, \
    sha256, staged_inodes, wait_for, write

pytestmark = pytest.mark.usefixtures("no_faults")
assert repo and no_faults	# fixtures, used by name

MiB = 1 << 20
BIG = 12 * MiB + 5	# above the Hub's 10 MiB cap on regular files
DEBUG = "log_level=debug"	# what the mount did, shown when a test fails


def metric(m, name):
    out = subprocess.run([HUBFS, "metrics", m.mnt], check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    for line in out.splitlines():
        if line.startswith("hubfs_" + name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no metric %s in %s" % (name, out))


def uploads(hub, seq, oid, kinds=("cdn-put", "cdn-part")):
    """The requests of object @oid since @seq on routes @kinds (by
    default its uploads, whole or part)."""
    return [e for e in hub.log_since(seq)
            if e["route"] in kinds and oid in e["path"]]


def routes(hub, seq):
    return [e["route"] for e in hub.log_since(seq)]


def settles(m, hub, cond, timeout=30):
    """wait_for(), failing with what the mount and the Hub last did."""
    if not wait_for(cond, timeout):
        raise AssertionError("%s\n%s" % (m.errors(), [
            (e["route"], e["status"]) for e in hub.log_since(0)[-12:]]))


def test_a_closed_file_is_uploaded_before_the_commit(hub, repo,
                                                     mount_factory,
                                                     tmp_path):
    prom = str(tmp_path / "hubfs.prom")
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG,
                      "metrics_file=" + prom, token=WRITE)
    n0 = len(commits(hub, repo))
    data = os.urandom(BIG)
    oid = sha256(data)
    seq = hub.mark()
    write(m.path("weights.bin"), data)
    # Sent on its own, with no commit.
    settles(m, hub, lambda: metric(m, "uploads_at_close_total") == 1)
    assert uploads(hub, seq, oid)
    assert metric(m, "uploads_at_close_bytes_total") == BIG
    assert metric(m, "uploads_at_close_stopped_total") == 0
    assert "commit" not in routes(hub, seq)
    assert len(commits(hub, repo)) == n0
    # The commit finds the object stored: it uploads nothing.
    seq = hub.mark()
    fsync(m.path("weights.bin"))
    assert not uploads(hub, seq, oid)
    assert "lfs-batch" in routes(hub, seq) and "commit" in routes(hub, seq)
    assert len(commits(hub, repo)) == n0 + 1
    assert real_bytes(hub, repo, "weights.bin") == data
    assert read(m.path("weights.bin")) == data
    # The counts written at unmount still hold it.
    assert m.stop() == 0
    assert final_metric(prom, "uploads_at_close_total") == 1
    assert final_metric(prom, "uploads_at_close_bytes_total") == BIG


def test_small_files_and_the_option_off_wait_for_the_commit(
        hub, repo, mount_factory):
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG,
                      "noupload_at_close", token=WRITE)
    big = os.urandom(BIG)
    seq = hub.mark()
    write(m.path("big.bin"), big)
    m2 = mount_factory(hub, repo, "commit_delay=600000", DEBUG, token=WRITE)
    small = os.urandom(10 * MiB)	# may still be regular
    write(m2.path("small.bin"), small)
    # A second file on the mount that uploads at close, as a clock: once
    # it is up, the two above would have been too.
    clock = os.urandom(BIG)
    write(m2.path("clock.bin"), clock)
    settles(m2, hub, lambda: metric(m2, "uploads_at_close_total") == 1)
    assert uploads(hub, seq, sha256(clock))
    assert metric(m, "uploads_at_close_total") == 0
    # Each is sent by its commit, and only then, however late an upload
    # at close might have come.
    for mnt, name, data in ((m, "big.bin", big), (m2, "small.bin", small)):
        before = hub.mark()
        fsync(mnt.path(name))
        sent = uploads(hub, seq, sha256(data))
        assert sent and sent == uploads(hub, before, sha256(data)), name
        assert real_bytes(hub, repo, name) == data
    assert metric(m2, "uploads_at_close_total") == 1


def slow_parts(hub, oid=None, seconds=2, times=None):
    """Multipart uploads of 512 KiB parts, each answered after @seconds
    (only those of object @oid, if given; the first @times, if given)."""
    hub.admin("POST", "/config", {"multipart_threshold": MiB,
                                  "multipart_chunk": 512 * 1024})
    rule = {"route": "cdn-part", "action": "stall", "seconds": seconds,
            "name": "slow"}
    if oid:
        rule["path"] = oid
    if times:
        rule["times"] = times
    hub.admin("POST", "/faults", rule)


@pytest.fixture
def multipart(hub):
    yield
    hub.admin("POST", "/config", {"multipart_threshold": 64 * MiB,
                                  "multipart_chunk": 16 * MiB})


def test_writing_again_stops_the_upload_and_commits_the_new_bytes(
        hub, repo, mount_factory, multipart):
    assert multipart is None
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG, token=WRITE)
    first, second = os.urandom(BIG), os.urandom(BIG)
    slow_parts(hub)
    seq = hub.mark()
    write(m.path("ckpt.bin"), first)
    # Its parts are going up (25 of them, 4 at a time, 2 s each).
    settles(m, hub, lambda: "lfs-batch" in routes(hub, seq))
    # Written again: the upload of the first bytes stops.
    write(m.path("ckpt.bin"), second)
    hub.admin("DELETE", "/faults")
    settles(m, hub, lambda: metric(m, "uploads_at_close_stopped_total")
            + metric(m, "uploads_at_close_total") == 2, 60)
    assert metric(m, "uploads_at_close_stopped_total") == 1
    assert len(uploads(hub, seq, sha256(first))) < 25
    fsync(m.path("ckpt.bin"))
    assert real_bytes(hub, repo, "ckpt.bin") == second
    assert read(m.path("ckpt.bin")) == second


def test_a_writer_cuts_short_the_retries_of_an_upload(
        hub, repo, mount_factory, multipart):
    assert multipart is None
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG, token=WRITE)
    first, second = os.urandom(BIG), os.urandom(BIG)
    hub.admin("POST", "/config", {"multipart_threshold": MiB,
                                  "multipart_chunk": 4 * MiB})
    # Every completion fails: the upload retries it, waiting 0.5, 1, 2,
    # 4 and 8 s (give or take a quarter) before the retries.
    hub.admin("POST", "/faults", {"route": "lfs-complete", "status": 500,
                                  "name": "down"})
    seq = hub.mark()
    write(m.path("r.bin"), first)
    settles(m, hub, lambda: routes(hub, seq).count("lfs-complete") >= 4)
    # The upload now waits 3 to 5 s.  The writer waits for neither that
    # nor the retries after it, and no further attempt is made.
    def completions():
        return uploads(hub, seq, sha256(first), ("lfs-complete",))
    t0 = time.monotonic()
    tried = len(completions())
    write(m.path("r.bin"), second)
    took = time.monotonic() - t0
    hub.admin("DELETE", "/faults")
    assert took < 2, took
    assert len(completions()) == tried
    settles(m, hub, lambda: metric(m, "uploads_at_close_stopped_total")
            + metric(m, "uploads_at_close_total") == 2, 60)
    assert metric(m, "uploads_at_close_stopped_total") == 1
    assert metric(m, "uploads_at_close_total") == 1
    fsync(m.path("r.bin"))
    assert real_bytes(hub, repo, "r.bin") == second


def test_an_upload_in_flight_is_waited_for_not_repeated(
        hub, repo, mount_factory, multipart):
    assert multipart is None
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG, token=WRITE)
    slow = {"a.bin": os.urandom(BIG), "b.bin": os.urandom(BIG)}
    other = os.urandom(BIG)
    slow_parts(hub, "|".join(sha256(d) for d in slow.values()))
    seq = hub.mark()
    for name, data in slow.items():
        write(m.path(name), data)
    # Both uploaders busy: c.bin waits in the queue.
    settles(m, hub, lambda: routes(hub, seq).count("lfs-batch") == 2)
    write(m.path("c.bin"), other)
    # The commit starts while the parts are still going up, and takes
    # c.bin over.  (An fsync of the file, not of the directory: the
    # kernel holds a directory's lock during its fsync, which would hold
    # up the unlink below until the commit ends.)
    done = []
    t = threading.Thread(
        target=lambda: done.append(fsync(m.path("c.bin"))))
    t.start()
    # Removed while the commit that holds it waits for its upload (the
    # commit's snapshot takes a moment; the upload, 14 s): that commit
    # still needs the bytes, so the upload goes on.
    time.sleep(1)
    os.unlink(m.path("b.bin"))
    t.join(120)
    assert done == [None]
    ends = []
    for data in slow.values():
        parts = uploads(hub, seq, sha256(data))
        # Every part once: the commit did not send the object again.
        assert len(parts) == 25
        assert len({e["path"].split("?")[0] for e in parts}) == 25
        ends.append(max(e["ts"] for e in parts))
    assert metric(m, "uploads_at_close_total") == 2
    # c.bin went up meanwhile, not after.
    c_parts = uploads(hub, seq, sha256(other))
    assert len(c_parts) == 25
    assert max(e["ts"] for e in c_parts) < min(ends)
    for name, data in slow.items():
        assert real_bytes(hub, repo, name) == data
    assert real_bytes(hub, repo, "c.bin") == other


def test_a_commit_sends_what_its_upload_at_close_failed_to(
        hub, repo, mount_factory, multipart):
    assert multipart is None
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG, token=WRITE)
    data = os.urandom(BIG)
    oid = sha256(data)
    slow_parts(hub, oid, seconds=1, times=25)
    seq = hub.mark()
    write(m.path("a.bin"), data)
    settles(m, hub, lambda: "lfs-batch" in routes(hub, seq))
    # The commit starts while the parts go up, and waits for them; then
    # the Hub refuses to assemble them.
    done = []
    t = threading.Thread(target=lambda: done.append(fsync(m.mnt)))
    t.start()
    settles(m, hub, lambda: "preupload" in routes(hub, seq))
    hub.admin("POST", "/faults", {"route": "lfs-complete", "status": 400,
                                  "times": 1, "name": "refused"})
    t.join(120)
    assert done == [None]
    assert metric(m, "uploads_at_close_stopped_total") == 1
    assert metric(m, "uploads_at_close_total") == 0
    # The commit sent the object itself, after the failed upload.
    assert routes(hub, seq).count("lfs-complete") == 2
    assert len(uploads(hub, seq, oid)) == 50
    assert real_bytes(hub, repo, "a.bin") == data


def test_a_file_removed_during_its_upload_stops_it(hub, repo, mount_factory,
                                                   multipart):
    assert multipart is None
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG, token=WRITE)
    data = os.urandom(BIG)
    slow_parts(hub)
    seq = hub.mark()
    write(m.path("gone.bin"), data)
    settles(m, hub, lambda: "lfs-batch" in routes(hub, seq))
    os.unlink(m.path("gone.bin"))
    settles(m, hub, lambda: metric(m, "uploads_at_close_stopped_total")
            == 1, 60)
    assert metric(m, "uploads_at_close_total") == 0
    assert len(uploads(hub, seq, sha256(data))) < 25


def test_a_file_removed_while_queued_leaves_the_queue_and_the_disk(
        hub, repo, mount_factory, multipart):
    assert multipart is None
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG, token=WRITE)
    busy = [os.urandom(BIG), os.urandom(BIG)]
    queued = os.urandom(BIG)
    slow_parts(hub, "|".join(sha256(d) for d in busy))
    seq = hub.mark()
    for i, data in enumerate(busy):
        write(m.path("busy%d.bin" % i), data)
    # Both uploaders busy (25 parts each, 4 at a time, 2 s each).
    settles(m, hub, lambda: routes(hub, seq).count("lfs-batch") == 2)
    write(m.path("queued.bin"), queued)
    assert len(staged_inodes(m.cache_dir)) == 3
    # The kernel sends the release after close() returns.
    settles(m, hub, lambda: "queued.bin: queued for upload" in m.errors())
    os.unlink(m.path("queued.bin"))
    # Its staged bytes go at once, not when an uploader comes to it.
    settles(m, hub, lambda: len(staged_inodes(m.cache_dir)) == 2, 5)
    assert routes(hub, seq).count("lfs-batch") == 2
    hub.admin("DELETE", "/faults")
    settles(m, hub, lambda: metric(m, "uploads_at_close_total") == 2, 60)
    assert uploads(hub, seq, sha256(queued)) == []
    assert metric(m, "uploads_at_close_stopped_total") == 0


def test_unmount_during_an_upload_at_close_commits_it_once(
        hub, repo, mount_factory, multipart, tmp_path):
    assert multipart is None
    prom = str(tmp_path / "hubfs.prom")
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG,
                      "metrics_file=" + prom, token=WRITE)
    data = os.urandom(BIG)
    oid = sha256(data)
    slow_parts(hub, oid, seconds=1)
    n0 = len(commits(hub, repo))
    seq = hub.mark()
    write(m.path("last.bin"), data)
    settles(m, hub, lambda: "lfs-batch" in routes(hub, seq))
    # The last commit waits for the upload, and sends nothing again.
    assert m.stop(timeout=120) == 0
    assert len(commits(hub, repo)) == n0 + 1
    assert real_bytes(hub, repo, "last.bin") == data
    parts = uploads(hub, seq, oid)
    assert len(parts) == 25
    assert len({e["path"].split("?")[0] for e in parts}) == 25
    assert final_metric(prom, "uploads_at_close_total") == 1


def test_truncate_without_a_handle_during_an_upload(hub, repo, mount_factory,
                                                    multipart):
    assert multipart is None
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG, token=WRITE)
    data = os.urandom(BIG)
    slow_parts(hub, sha256(data))
    seq = hub.mark()
    write(m.path("cut.bin"), data)
    settles(m, hub, lambda: "lfs-batch" in routes(hub, seq))
    # truncate(2): no handle, so no close queues it again; the upload of
    # the whole bytes stops, and the commit sends what the file holds.
    os.truncate(m.path("cut.bin"), 11 * MiB)
    assert read(m.path("cut.bin")) == data[:11 * MiB]
    settles(m, hub, lambda: metric(m, "uploads_at_close_stopped_total")
            == 1, 60)
    assert len(uploads(hub, seq, sha256(data))) < 25
    hub.admin("DELETE", "/faults")
    fsync(m.path("cut.bin"))
    assert real_bytes(hub, repo, "cut.bin") == data[:11 * MiB]
    assert metric(m, "uploads_at_close_total") == 0


def test_a_failed_upload_at_close_is_left_to_the_commit(hub, repo,
                                                        mount_factory):
    m = mount_factory(hub, repo, "commit_delay=600000", DEBUG,
                      token=WRITE)
    data = os.urandom(BIG)
    # A refused batch call, not a refused PUT: curl may see a PUT's
    # early answer as a failed send, which is retried.
    hub.admin("POST", "/faults", {"route": "lfs-batch", "status": 400,
                                  "times": 1, "name": "refused"})
    write(m.path("w.bin"), data)
    settles(m, hub, lambda: metric(m, "uploads_at_close_stopped_total")
            == 1)
    assert "upload of w.bin at close failed" in m.errors()
    n0 = len(commits(hub, repo))
    fsync(m.path("w.bin"))
    assert len(commits(hub, repo)) == n0 + 1
    assert real_bytes(hub, repo, "w.bin") == data
