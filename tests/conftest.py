"""Shared fixtures.  The tests run as root (CI does): sshd, bpftrace and VMs need it."""

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sshd_hosts import SshFarm, ensure_tracefs, install_lab_prefix  # noqa: E402

TEST_LAB = REPO / "tests" / "fixtures" / "labs" / "tracepoints"


def _phase(nodeid):
    """unit | integration | faults | vm/<file>: the rows of the time table printed at the end of a run."""
    parts = nodeid.split("::")[0].split("/")
    if len(parts) >= 3 and parts[0] == "tests":
        return parts[1] if parts[1] != "vm" else "vm/" + parts[2].removesuffix(".py")
    return parts[0]


_PHASE_SECONDS = {}


def pytest_runtest_logreport(report):
    _PHASE_SECONDS[_phase(report.nodeid)] = _PHASE_SECONDS.get(_phase(report.nodeid), 0.0) + report.duration


def pytest_terminal_summary(terminalreporter, config):
    """Where the time went, per suite (and per VM test file, which holds the session VM's set-up), so a slow
    CI run shows its slow phase without reading --durations."""
    if not _PHASE_SECONDS:
        return
    total = sum(_PHASE_SECONDS.values())
    tr = terminalreporter
    tr.section("time per phase")
    for phase, sec in sorted(_PHASE_SECONDS.items(), key=lambda kv: -kv[1]):
        tr.write_line(f"{phase:<32} {sec:8.1f} s  {100 * sec / total:5.1f} %")
    vm = getattr(config, "bpfhol_vm_timings", None)
    if vm:
        tr.write_line("the session VM: " + ", ".join(f"{k} {v}" for k, v in vm.items()))
    tr.write_line(f"{'all tests':<32} {total:8.1f} s")


def pytest_configure(config):
    for name, text in [("vm", "boots a real VM (slow)"), ("integration", "real sshd + real bpftrace on this host"),
                       ("faults", "fault and abuse suite (real sshd)")]:
        config.addinivalue_line("markers", "%s: %s" % (name, text))


@pytest.fixture(autouse=True)
def own_known_hosts(tmp_path, monkeypatch):
    """Each test pins host keys in its own file (the grader's default is one file per account, and the loopback
    sshd hosts reuse ports with fresh keys); the CLI subprocesses inherit it."""
    monkeypatch.setenv("BPFHOL_KNOWN_HOSTS", str(tmp_path / "known_hosts"))


@pytest.fixture(scope="session")
def lab_prefix(tmp_path_factory):
    """/opt/bpfhol-like tree on this host: bin/kprobeme and sbin/bpfhol-agent."""
    if os.geteuid() != 0:
        pytest.fail("the integration tests run as root (sshd, bpftrace); run them through scripts/test")
    if not shutil.which("bpftrace"):
        pytest.fail("bpftrace is missing: run scripts/setup-host")
    ensure_tracefs()
    root = tmp_path_factory.mktemp("prefix")
    agent = install_lab_prefix(root)
    return {"root": root, "agent": str(agent)}


@pytest.fixture(scope="session")
def farm():
    f = SshFarm()
    yield f
    f.close()


@pytest.fixture(scope="session")
def test_lab():
    return str(TEST_LAB)
