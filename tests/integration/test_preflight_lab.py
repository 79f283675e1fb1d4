"""preflight --lab proves the lab's own probe kind (lab.yaml host_probe), over real sshd on loopback with the real
agent and bpftrace.  This host's kernel has uprobes and tracepoints but no kprobes: the default (a kprobe proof)
calls it BROKEN, while `--lab uprobes` proves a uprobe attach through a short job of uprobeme and calls it fit.
About 15 s."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def preflight(roster, *extra):
    return subprocess.run([sys.executable, "-m", "grader", "preflight", str(roster), *map(str, extra)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def kernel_has_kprobes():
    return Path("/sys/kernel/tracing/kprobe_events").exists() or Path("/sys/kernel/debug/tracing/kprobe_events").exists()


def test_preflight_proves_the_labs_own_probe_kind(tmp_path, farm, lab_prefix):
    host = farm.add()
    roster = tmp_path / "vms.yml"
    roster.write_text(yaml.safe_dump({"students": [
        {"student": "vm1", "host": "127.0.0.1", "port": host.port, "user": "root", "key": host.key,
         "agent": lab_prefix["agent"]}]}))

    fit = preflight(roster, "--lab", "uprobes")
    assert fit.returncode == 0, fit.stdout + fit.stderr
    [header, row] = fit.stdout.splitlines()
    assert "probe" in header and "uprobe yes" in row and row.rstrip().endswith("ok"), fit.stdout

    # the kprobes lab, and the default, still prove a kprobe: on a kernel without kprobes that is BROKEN
    for extra in ((), ("--lab", "kprobes")):
        default = preflight(roster, *extra)
        if kernel_has_kprobes():
            assert default.returncode == 0 and "kprobe yes" in default.stdout, default.stdout
        else:
            assert default.returncode == 4, default.stdout + default.stderr
            assert "kprobe no" in default.stdout and "BROKEN: kprobes do not attach" in default.stdout, default.stdout


def test_preflight_names_an_unknown_lab_in_one_line(tmp_path):
    roster = tmp_path / "vms.yml"
    roster.write_text("students:\n- {student: vm1, host: 127.0.0.1}\n")
    proc = preflight(roster, "--lab", "nosuchlab")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "unknown lab 'nosuchlab'" in proc.stderr and "uprobes" in proc.stderr, proc.stderr
