"""Real sshd instances on loopback for grader tests: each is a separate SSH host (own port,
own host key, own authorized key) that shares this machine's kernel.  Used by the
integration and fault suites and by bench/cohort.py."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                s.settimeout(1)
                if s.recv(4).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def keygen(path, kind="ed25519"):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


@dataclass
class SshHost:
    port: int
    key: str
    workdir: Path
    proc: subprocess.Popen = None
    host: str = "127.0.0.1"
    user: str = "root"

    def stop(self, sig=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def start(self):
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.workdir / "sshd_config")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "sshd.log", "ab"))
        if not wait_port(self.port, host=self.host):
            raise RuntimeError("sshd on %s:%d did not come up; see %s" % (self.host, self.port,
                                                                          self.workdir / "sshd.log"))
        return self

    def regenerate_host_key(self):
        for f in self.workdir.glob("host_key*"):
            f.unlink()
        keygen(self.workdir / "host_key")


class SshFarm:
    """Start many sshd hosts; all of them log in as root with one client key."""

    def __init__(self, root=None):
        self.root = Path(root or tempfile.mkdtemp(prefix="bpfhol-sshd-"))
        self.client_key = str(keygen(self.root / "client_key"))
        self.hosts = []
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def add(self, port=None, listen="127.0.0.1", extra_config=""):
        port = port or free_port()
        workdir = self.root / ("host-%d" % port)
        workdir.mkdir()
        keygen(workdir / "host_key")
        shutil.copy(self.client_key + ".pub", workdir / "authorized_keys")
        (workdir / "sshd_config").write_text(
            "Port %d\nListenAddress %s\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nMaxStartups 200:30:400\nMaxSessions 50\nLogLevel ERROR\n"
            "Subsystem sftp internal-sftp\n%s"
            % (port, listen, workdir / "host_key", workdir / "authorized_keys", workdir / "sshd.pid", extra_config))
        host = SshHost(port=port, key=self.client_key, workdir=workdir, host=listen)
        host.start()
        self.hosts.append(host)
        return host

    def close(self):
        for h in self.hosts:
            h.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def install_lab_prefix(root):
    """A lab-host install tree (as the roles make /opt/bpfhol: every lab's workloads, the agent) for the hosts
    sharing this machine."""
    root = Path(root)
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "sbin").mkdir(parents=True, exist_ok=True)
    for workload in sorted((REPO / "labs").glob("*/workload")):       # every lab's workloads, as the roles do
        build = Path(tempfile.mkdtemp(prefix="bpfhol-build-"))
        shutil.copytree(workload, build / "workload")
        subprocess.run(["make", "-s", "-C", str(build / "workload"), "install", "PREFIX=" + str(root)],
                       check=True, timeout=120)
        shutil.rmtree(build, ignore_errors=True)
    agent = root / "sbin" / "bpfhol-agent"
    shutil.copy(REPO / "grader" / "agent.py", agent)
    os.chmod(agent, 0o755)
    return agent


def ensure_tracefs():
    if not os.path.exists("/sys/kernel/tracing/events"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], timeout=10)
    if not os.path.exists("/sys/kernel/debug/tracing"):
        subprocess.run(["mount", "-t", "debugfs", "nodev", "/sys/kernel/debug"], timeout=10)


def answers_folder(tmp_path, name, scripts):
    """A student's answers folder (cohort mode's ``answers`` column): {file name: script text} under tmp_path."""
    folder = Path(tmp_path) / "answers" / name
    folder.mkdir(parents=True)
    for fname, text in scripts.items():
        (folder / fname).write_text(text)
    return str(folder)


def forged_agent_running_references(path, real_agent, references):
    """What a student who is root on their VM can install as its agent: a wrapper that runs the reference answers
    in ``references`` (a folder of <exercise id>.bt) whatever scripts a job names, through the real agent."""
    Path(path).write_text(f"""#!/usr/bin/env python3
import json, os, subprocess, sys
if sys.argv[1:2] == ["run"]:                 # the job comes on stdin after the real agent's ready line
    agent = subprocess.Popen([sys.executable, "{real_agent}"] + sys.argv[1:], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    sys.stdout.buffer.write(agent.stdout.readline())
    sys.stdout.flush()
    sent = json.loads(sys.stdin.buffer.read())
    for spec in sent["job"]["scripts"]:
        spec.pop("upload", None)
        spec["path"] = "{references}/" + spec["name"] + ".bt"
    out, _ = agent.communicate(json.dumps(sent).encode())
    sys.stdout.buffer.write(out)
    sys.exit(agent.returncode)
os.execv(sys.executable, [sys.executable, "{real_agent}"] + sys.argv[1:])
""")
    os.chmod(path, 0o755)
    return str(path)
