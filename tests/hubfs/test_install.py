"""cmake --install, and mounting through mount(8) and fstab.

mount(8) looks for its helpers only in /sbin (here /usr/sbin), so the test
installs into a staging prefix and links the two helpers there for its
duration; it refuses to touch a mount.hubfs it did not create.
"""

import os
import subprocess

import pytest

from conftest import Mount

HELPERS = ("mount.hubfs", "mount.fuse.hubfs")


def test_install_layout(staged):
    assert os.access(os.path.join(staged, "bin", "hubfs"), os.X_OK)
    for h in HELPERS:
        link = os.path.join(staged, "sbin", h)
        assert os.readlink(link) == "../bin/hubfs"
        assert os.path.samefile(link, os.path.join(staged, "bin", "hubfs"))
    for page in ("share/man/man1/hubfs.1", "share/man/man8/mount.hubfs.8"):
        path = os.path.join(staged, page)
        out = subprocess.run(["man", "-l", "-Tutf8", path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert out.returncode == 0 and b"hubfs" in out.stdout, page
        assert not out.stderr, out.stderr
    unit = os.path.join(staged, "lib", "systemd", "system", "hubfs@.service")
    assert "ExecStart=%s/bin/hubfs -f " % staged in open(unit).read()
    for f in ("examples/hubfs.conf", "examples/mnt-model.mount",
              "examples/mnt-model.automount", "hubfs.md", "design.md",
              "comparison.md"):
        assert os.path.isfile(os.path.join(staged, "share", "doc", "hubfs",
                                           f)), f


@pytest.fixture
def helpers_in_sbin(staged):
    made = []
    for h in HELPERS:
        target = os.path.join("/sbin", h)
        if os.path.lexists(target):
            for m in made:
                os.unlink(m)
            pytest.skip("%s exists already; not replacing it" % target)
        os.symlink(os.path.join(staged, "sbin", h), target)
        made.append(target)
    yield
    for m in made:
        os.unlink(m)


def wait_unmounted(path):
    subprocess.run(["umount", path], check=True)
    assert not os.path.ismount(path)


@pytest.mark.parametrize("fstype", ["hubfs", "fuse.hubfs"])
def test_mount_t(hub, tmp_path, helpers_in_sbin, fstype):
    m = Mount(str(tmp_path), "tester/model1", hub.url)
    r = subprocess.run(["mount", "-t", fstype, "tester/model1", m.mnt,
                        "-o", "cache_dir=%s,_netdev,nofail" % m.cache_dir],
                       env=m.env(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    try:
        assert r.returncode == 0, r.stderr.decode()
        assert os.path.ismount(m.mnt)
        assert "config.json" in os.listdir(m.mnt)
        with open("/proc/self/mountinfo") as f:
            line = [x for x in f if " %s " % m.mnt in x][0]
        assert "fuse.hubfs" in line and "hubfs:models/tester/model1" in line
    finally:
        if os.path.ismount(m.mnt):
            wait_unmounted(m.mnt)


def test_fstab(hub, tmp_path, helpers_in_sbin):
    m = Mount(str(tmp_path), "tester/model1", hub.url)
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "# a comment\n"
        "tester/model1@v1.0 %s hubfs _netdev,nofail,x-systemd.automount,"
        "x-systemd.idle-timeout=60,cache_dir=%s,endpoint=%s 0 0\n" % (
            m.mnt, m.cache_dir, hub.url))
    r = subprocess.run(["mount", "-T", str(fstab), "-a"], env=m.env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    try:
        assert r.returncode == 0, r.stderr.decode()
        assert os.path.ismount(m.mnt)
        assert os.getxattr(m.mnt, "user.hubfs.commit").decode() == \
            hub.seeded["model"]["v1.0"]
    finally:
        if os.path.ismount(m.mnt):
            wait_unmounted(m.mnt)
