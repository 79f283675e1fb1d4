"""A slow, lossy link to one lab host, made in network namespaces of our own (10.213.7.0/30 exists
only between them).  This kernel has no sch_netem, so "slow" is a tbf rate limit (128 kbit/s) and
"lossy" is iptables' statistic match dropping 10% of packets each way; there is no added delay.
The grader runs in the client namespace; a second host on that namespace's own loopback is the
control student."""

import shutil
import subprocess
import sys
import uuid

import pytest

from faultkit import (FAULT_LAB, REPO, answers, graded_normally, reference, row, run_grader, validate_results,
                      write_roster)
from sshd_hosts import SSHD, SshHost, keygen

pytestmark = pytest.mark.faults


def sh(*cmd, ns=None, check=True):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, timeout=30)


class NsHost(SshHost):
    """An sshd started inside a network namespace."""

    ns: str = ""

    def start(self):
        # `ip netns exec` remounts /sys in a private mount namespace, without tracefs: mount it
        # there again, or bpftrace finds no tracepoints.
        boot = ("mount -t tracefs nodev /sys/kernel/tracing; mount -t debugfs nodev /sys/kernel/debug; "
                'exec "$0" -D -e -f "$1"')
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "sh", "-c", boot, SSHD,
                                      str(self.workdir / "sshd_config")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "sshd.log", "ab"))
        probe = ("import sys; sys.path.insert(0, %r); from sshd_hosts import wait_port; "
                 "sys.exit(0 if wait_port(%d, timeout=20, host=%r) else 1)" % (str(REPO / "tests"), self.port,
                                                                               self.host))
        if subprocess.run(["ip", "netns", "exec", self.client_ns, sys.executable, "-c", probe],
                          timeout=40).returncode:
            raise RuntimeError("sshd in %s did not come up; see %s" % (self.ns, self.workdir / "sshd.log"))
        return self


def ns_host(farm, ns, client_ns, listen, port):
    workdir = farm.root / ("ns-%s-%d" % (ns, port))
    workdir.mkdir()
    keygen(workdir / "host_key")
    shutil.copy(farm.client_key + ".pub", workdir / "authorized_keys")
    (workdir / "sshd_config").write_text(
        "Port %d\nListenAddress %s\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nLogLevel ERROR\nSubsystem sftp internal-sftp\n"
        % (port, listen, workdir / "host_key", workdir / "authorized_keys", workdir / "sshd.pid"))
    host = NsHost(port=port, key=farm.client_key, workdir=workdir, host=listen)
    host.ns, host.client_ns = ns, client_ns
    return host.start()


@pytest.fixture
def namespaces():
    tag = uuid.uuid4().hex[:6]
    client, server = "bpfhol-c-" + tag, "bpfhol-s-" + tag
    hosts = []
    try:
        sh("ip", "netns", "add", client)
        sh("ip", "netns", "add", server)
        # The veth pair is created inside the client namespace: nothing is added to the host's network.
        sh("ip", "link", "add", "vc", "type", "veth", "peer", "name", "vs", ns=client)
        sh("ip", "link", "set", "vs", "netns", server, ns=client)
        sh("ip", "addr", "add", "10.213.7.1/30", "dev", "vc", ns=client)
        sh("ip", "addr", "add", "10.213.7.2/30", "dev", "vs", ns=server)
        for ns, dev in ((client, "vc"), (server, "vs")):
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        for dev, ns in (("vc", client), ("vs", server)):
            sh("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "128kbit", "burst", "4kb", "latency",
               "300ms", ns=ns)
        for chain in ("INPUT", "OUTPUT"):
            sh("iptables", "-A", chain, "-i" if chain == "INPUT" else "-o", "vs", "-m", "statistic", "--mode",
               "random", "--probability", "0.10", "-j", "DROP", ns=server)
        yield {"client": client, "server": server, "hosts": hosts}
    finally:
        for h in hosts:
            h.stop()
        sh("ip", "netns", "del", client, check=False)
        sh("ip", "netns", "del", server, check=False)


def test_slow_lossy_link(tmp_path, farm, lab_prefix, namespaces):
    client, server = namespaces["client"], namespaces["server"]
    slow = ns_host(farm, server, client, "10.213.7.2", 2222)
    namespaces["hosts"].append(slow)
    control = ns_host(farm, client, client, "127.0.0.1", 2222)
    namespaces["hosts"].append(control)
    ref = answers(tmp_path, "ref", reference())
    rows = [row("control", control, lab_prefix["agent"], ref), row("slowlink", slow, lab_prefix["agent"], ref)]
    roster = write_roster(tmp_path / "roster.yml", rows)
    proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res", "--parallel", 1,
                            "--connect-timeout", 5, "--retries", 1, netns=client, timeout=300)
    stats = sh("iptables", "-L", "-v", "-n", ns=server).stdout
    print(stats, "wall", wall)
    assert wall < 150, wall
    by = validate_results(tmp_path / "res", ["control", "slowlink"])
    assert graded_normally(by["control"]), by["control"]
    slowlink = by["slowlink"]
    print("seconds: control %.1f, slow link %.1f" % (by["control"]["seconds"], slowlink["seconds"]))
    # Graded (the usual outcome), or clearly not gradable with a reason a person can act on.
    assert graded_normally(slowlink) or \
        any(w in slowlink["error"] for w in ("unreachable", "lost", "did not finish")), slowlink
    assert proc.returncode == (0 if slowlink["status"] == "graded" else 1), proc.stderr[-3000:]
