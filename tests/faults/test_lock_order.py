"""Issue 34, item 9: the agent's lock was not first come, first served: every waiting job polled the lock
every 0.2 s and whoever polled first after its release won (a later job overtook an earlier one, 34 s of
waiting against 4 s).  Now waiting jobs queue by ticket and only the first in line tries the lock.

Real agent code in separate processes (as separate `bpfhol-agent run` invocations are) on a lock of the
test's own; a waiter killed while waiting loses its place and blocks no one."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import agent

pytestmark = pytest.mark.faults
REPO = str(Path(agent.__file__).resolve().parents[1])

WAITER = """
import os, sys, time
sys.path.insert(0, %r)
from grader import agent
agent.LOCK_FILE = %r
fd = agent.hold_lock(60)
with open(%r, "a") as out:
    out.write(sys.argv[1] + "\\n")
time.sleep(0.2)
"""


def _waiters(tmp_path, names, gap=0.3):
    lock, order = str(tmp_path / "agent.lock"), str(tmp_path / "order")
    procs = {}
    for name in names:
        procs[name] = subprocess.Popen([sys.executable, "-c", WAITER % (REPO, lock, order), name])
        time.sleep(gap)
    return procs, order


def test_waiting_jobs_get_the_lock_in_the_order_they_came(tmp_path, monkeypatch):
    monkeypatch.setattr(agent, "LOCK_FILE", str(tmp_path / "agent.lock"))
    for rnd in range(3):
        held = agent.hold_lock(1)                                  # a running job
        names = ["r%d-w%d" % (rnd, i) for i in range(5)]
        procs, order = _waiters(tmp_path, names)
        time.sleep(0.5)                                            # all five are waiting
        os.close(held)
        for proc in procs.values():
            assert proc.wait(timeout=60) == 0
        got = Path(order).read_text().split()
        Path(order).unlink()
        assert got == names, got
    assert os.listdir(str(tmp_path / "agent.lock.queue")) == []   # no ticket left behind


def test_a_waiter_killed_in_line_blocks_no_one(tmp_path, monkeypatch):
    monkeypatch.setattr(agent, "LOCK_FILE", str(tmp_path / "agent.lock"))
    held = agent.hold_lock(1)
    procs, order = _waiters(tmp_path, ["first", "killed", "third"])
    time.sleep(0.5)
    procs["killed"].send_signal(signal.SIGKILL)                  # its ticket stays, locked by no one
    procs["killed"].wait(timeout=10)
    t0 = time.monotonic()
    os.close(held)
    for name in ("first", "third"):
        assert procs[name].wait(timeout=60) == 0
    assert Path(order).read_text().split() == ["first", "third"]
    assert time.monotonic() - t0 < 5
