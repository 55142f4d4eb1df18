"""cpack -G DEB: the package builds, installs with dpkg, mounts through
mount(8), and is removed again.  Skipped where a hubfs package or binary
is installed already (the test does not replace what it did not
install)."""

import os
import subprocess

import pytest

from conftest import BUILD_DIR, READ, Mount


def run(*argv, **kw):
    r = subprocess.run(list(argv), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300, **kw)
    assert r.returncode == 0, (argv, r.stdout.decode())
    return r.stdout.decode()


@pytest.fixture
def deb(tmp_path):
    out = tmp_path / "pkg"
    run("cpack", "-G", "DEB", "-B", str(out), "--config",
        os.path.join(BUILD_DIR, "CPackConfig.cmake"))
    debs = [p for p in os.listdir(out) if p.endswith(".deb")]
    assert len(debs) == 1, debs
    return str(out / debs[0])


def installed():
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "hubfs"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return b"install ok installed" in r.stdout


def test_deb_contents(deb):
    listing = run("dpkg-deb", "-c", deb)
    for path in ("./usr/bin/hubfs", "./usr/sbin/mount.hubfs",
                 "./usr/sbin/mount.fuse.hubfs",
                 "./usr/lib/systemd/system/hubfs@.service",
                 "./usr/share/man/man1/hubfs.1",
                 "./usr/share/man/man8/mount.hubfs.8",
                 "./usr/share/doc/hubfs/examples/hubfs.conf",
                 "./usr/share/doc/hubfs/examples/mnt-model.mount"):
        assert path in listing, path
    assert "./usr/sbin/mount.hubfs -> ../bin/hubfs" in listing
    info = run("dpkg-deb", "-I", deb)
    assert "Package: hubfs" in info
    for dep in ("fuse3", "libfuse3-3", "libcurl4", "libsqlite3-0",
                "libjansson4", "libssl3"):
        assert dep in info.split("Depends:")[1].split("\n")[0], dep


def test_deb_installs_and_mounts(deb, hub, tmp_path):
    if installed() or os.path.exists("/usr/bin/hubfs") or \
            os.path.lexists("/usr/sbin/mount.hubfs"):
        pytest.skip("hubfs is installed on this machine already")
    m = Mount(str(tmp_path), "tester/model1", hub.url, token=READ)
    try:
        run("dpkg", "-i", deb)
        unit = open("/usr/lib/systemd/system/hubfs@.service").read()
        assert "ExecStart=/usr/bin/hubfs -f " in unit
        assert run("/usr/bin/hubfs", "--version").startswith("hubfs ")
        run("mount", "-t", "hubfs", "tester/model1", m.mnt, "-o",
            "ro,cache_dir=%s" % m.cache_dir, env=m.env())
        assert os.path.ismount(m.mnt)
        with open(m.path("config.json"), "rb") as f:
            assert f.read().startswith(b"{")
        status = run("/usr/bin/hubfs", "status", m.mnt)
        assert "repository: models/tester/model1" in status
        assert "man page" not in run("man", "-w", "hubfs")
    finally:
        if os.path.ismount(m.mnt):
            subprocess.run(["umount", m.mnt])
        if installed():
            run("dpkg", "--purge", "hubfs")
    assert not os.path.exists("/usr/bin/hubfs")
    assert not os.path.lexists("/usr/sbin/mount.hubfs")
