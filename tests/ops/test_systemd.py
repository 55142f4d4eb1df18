"""The systemd units: systemd-analyze verify, and the template service's
ExecStartPre/ExecStart/ExecStop lines run as systemd would run them, with
a notify socket of the test's own, checking READY and STATUS messages.

PID 1 here is not systemd, so the lines are parsed from the installed
unit and run by the test: the same argv, environment file and
specifiers (%i, %f) systemd would use."""

import os
import shlex
import shutil
import socket
import subprocess
import time

import pytest

from conftest import WRITE

NEEDS = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                           reason="systemd-analyze is not installed")


def unit_path(staged):
    return os.path.join(staged, "lib", "systemd", "system", "hubfs@.service")


def examples(staged):
    return os.path.join(staged, "share", "doc", "hubfs", "examples")


def escape_path(path):
    return subprocess.run(["systemd-escape", "--path", path], check=True,
                          stdout=subprocess.PIPE).stdout.decode().strip()


@NEEDS
def test_units_verify(staged, tmp_path):
    d = tmp_path / "units"
    d.mkdir()
    shutil.copy(unit_path(staged), d / "hubfs@mnt-model.service")
    for name in ("mnt-model.mount", "mnt-model.automount"):
        shutil.copy(os.path.join(examples(staged), name), d / name)
    env = dict(os.environ, MANPATH=os.path.join(staged, "share", "man") + ":")
    r = subprocess.run(["systemd-analyze", "verify",
                        "hubfs@mnt-model.service", "mnt-model.mount",
                        "mnt-model.automount"], cwd=str(d), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    assert r.stdout.decode().strip() == ""
    # The unit names the installed binary.
    text = open(unit_path(staged)).read()
    assert "ExecStart=%s/bin/hubfs -f " % staged in text
    assert "Type=notify" in text


def unit_lines(staged):
    """{key: [values]} of the [Service] section."""
    out, section = {}, None
    for line in open(unit_path(staged)):
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and \
                not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def env_file(path):
    env = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env


def expand(line, instance, env):
    """A command line as systemd runs it: specifiers, then ${VAR} as one
    word each."""
    words = []
    for w in shlex.split(line.replace("%i", instance).replace(
            "%f", "/" + instance.replace("-", "/"))):
        for k, v in env.items():
            w = w.replace("${%s}" % k, v)
        words.append(w)
    return words


class Notify:
    """A datagram socket standing in for the service manager's."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []

    def wait_for(self, text, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(text in m for m in self.messages):
                return True
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        return any(text in m for m in self.messages)

    def close(self):
        self.sock.close()


def test_service_lines_notify_ready_and_drain_at_stop(staged, hub,
                                                      tmp_path):
    repo = "tester/svc"
    hub.seed("seed-model", repo, "--no-history")
    # Mount points under the test's directory, where systemd's path
    # escaping is the plain '/'-to-'-' one (no '-' in the path).
    base = "/tmp/hubfssvc%d" % os.getpid()
    mnt = base + "/mnt"
    instance = escape_path(mnt)
    assert instance == mnt[1:].replace("/", "-")
    conf = tmp_path / "instance.conf"
    conf.write_text(
        "HUBFS_SOURCE=%s\n"
        "HUBFS_OPTIONS=cache_dir=%s,commit_delay=600000\n"
        "HF_TOKEN=%s\nHF_ENDPOINT=%s\n" % (
            repo, tmp_path / "cache", WRITE, hub.url))
    svc = unit_lines(staged)
    assert svc["EnvironmentFile"] == ["/etc/hubfs/%i.conf"]
    env = env_file(str(conf))
    notify = Notify(str(tmp_path / "notify.sock"))
    penv = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    penv.update(env)
    penv["NOTIFY_SOCKET"] = notify.path
    penv["HOME"] = str(tmp_path)
    proc = None
    out = open(tmp_path / "service.out", "wb")
    try:
        for line in svc["ExecStartPre"]:
            subprocess.run(expand(line, instance, env), check=True)
        assert os.path.isdir(mnt)
        proc = subprocess.Popen(expand(svc["ExecStart"][0], instance, env),
                                env=penv, stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL)
        assert notify.wait_for("READY=1"), notify.messages
        # READY means the mount is live.
        assert os.path.ismount(mnt)
        ready = [m for m in notify.messages if "READY=1" in m][0]
        assert "MAINPID=%d" % proc.pid in ready
        assert "STATUS=Mounted" in ready
        with open(os.path.join(mnt, "from-service.txt"), "wb") as f:
            f.write(b"written under the service\n")
        for line in svc["ExecStop"]:
            subprocess.run(expand(line, instance, env), check=True,
                           timeout=60)
        assert proc.wait(120) == 0
        assert notify.wait_for("STATUS=All changes committed", 5), \
            notify.messages
        text = "\n".join(notify.messages)
        assert "STOPPING=1" in text
        assert "STATUS=Committing 1 pending change to main" in text
        assert text.index("STOPPING=1") < text.index("STATUS=Committing")
        r = hub.get("/api/models/%s/tree/main" % repo)
        assert "from-service.txt" in [e["path"] for e in r.json()]
    finally:
        if proc and proc.poll() is None:
            subprocess.run(["umount", "-l", mnt])
            proc.kill()
            proc.wait(30)
        out.close()
        notify.close()
        shutil.rmtree(base, ignore_errors=True)
    log = open(tmp_path / "service.out", "rb").read().decode()
    assert WRITE not in log
