"""A lab host whose tracefs is not mounted (a broken VM): bpftrace there says "tracepoint not found",
which looks like a student's compile error.  The grader must call it what it is: the host is broken
(not gradable, "VM broken"), preflight names tracefs, and the student on a healthy host is graded."""

import subprocess

import pytest

from faultkit import FAULT_LAB, answers, graded_normally, reference, row, run_grader, validate_results, write_roster
from sshd_hosts import SSHD, SshHost, wait_port

pytestmark = pytest.mark.faults


class NoTracefsHost(SshHost):
    """An sshd in a private mount namespace where tracefs (and debugfs) are unmounted."""

    def start(self):
        boot = ("mount --make-rprivate / && umount -l /sys/kernel/tracing; umount -l /sys/kernel/debug; "
                'exec "$0" -D -e -f "$1"')
        self.proc = subprocess.Popen(["unshare", "-m", "sh", "-c", boot, SSHD, str(self.workdir / "sshd_config")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "sshd.log", "ab"))
        if not wait_port(self.port, host=self.host):
            raise RuntimeError("sshd did not come up; see %s" % (self.workdir / "sshd.log"))
        return self


def test_host_without_tracefs_is_a_broken_vm_not_a_wrong_student(tmp_path, farm, lab_prefix):
    good = farm.add()
    broken_cfg = farm.add()
    broken_cfg.stop()                       # reuse its config and keys, restarted without tracefs
    broken = NoTracefsHost(port=broken_cfg.port, key=broken_cfg.key, workdir=broken_cfg.workdir).start()
    agent = lab_prefix["agent"]
    try:
        probe = subprocess.run(["ssh", "-i", broken.key, "-p", str(broken.port), "-o", "BatchMode=yes",
                                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                "root@127.0.0.1", "test -d /sys/kernel/tracing/events && echo mounted || echo gone"],
                               capture_output=True, text=True, timeout=30)
        assert probe.stdout.strip() == "gone", probe       # the fault is really there

        rows = [row("good", good, agent, answers(tmp_path, "good", reference())),
                row("broken", broken, agent, answers(tmp_path, "broken", reference()))]
        roster = write_roster(tmp_path / "roster.yml", rows)

        pre, _ = run_grader("preflight", roster, "--known-hosts", tmp_path / "kh", timeout=180)
        lines = {l.split()[0]: l for l in pre.stdout.splitlines()[1:] if l.strip()}
        assert "tracefs not mounted" in lines["broken"], pre.stdout
        assert "tracefs" not in lines["good"], pre.stdout

        proc, _ = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                             "--known-hosts", tmp_path / "kh", "--parallel", 1, timeout=600)
    finally:
        broken.stop()
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    by = validate_results(tmp_path / "res", ["good", "broken"])
    assert graded_normally(by["good"]), by["good"]
    assert by["broken"]["status"] == "not_gradable", by["broken"]
    assert "VM broken" in by["broken"]["error"] and "tracefs" in by["broken"]["error"], by["broken"]
    assert not by["broken"]["exercises"]                   # no compile_error pinned on the student
