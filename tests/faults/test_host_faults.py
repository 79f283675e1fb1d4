"""Hosts that fail while a cohort is graded: down, silent, wrong key, sshd killed mid-run,
"VM rebooted" mid-run.  Each case: the affected student gets a clear result, the others are
graded normally, the run ends within its bound, the results on disk are complete and valid."""

import socket
import threading

import pytest

from faultkit import (FAULT_LAB, MidRunFault, answers, graded_normally, reference, row, run_grader, validate_results,
                      wait_no_agents, write_roster)
from sshd_hosts import free_port, keygen

pytestmark = pytest.mark.faults


class SilentListener:
    """Accepts TCP and never says a word (no SSH banner): a hung VM, a tarpit."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)          # held open, never written to

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_down_silent_and_refused_hosts(tmp_path, farm, lab_prefix):
    """One good student (alone running a workload, so its verdict is exact) among hosts that fail
    before any workload starts; graded in parallel."""
    good = farm.add()
    silent = SilentListener()
    other_key = keygen(tmp_path / "not_the_key")
    agent = lab_prefix["agent"]
    ref = answers(tmp_path, "good", reference())
    rows = [
        row("good", good, agent, ref),
        dict(row("down", good, agent, ref), port=free_port()),            # closed port
        dict(row("silent", good, agent, ref), port=silent.port),          # TCP yes, SSH never
        dict(row("wrongkey", good, agent, ref), key=str(other_key)),      # authentication refused
        dict(row("nokey", good, agent, ref), key=str(tmp_path / "missing_key")),
    ]
    roster = write_roster(tmp_path / "roster.yml", rows)
    try:
        proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                                "--parallel", 5, "--connect-timeout", 2, "--retries", 1, timeout=180)
    finally:
        silent.close()
    # Bound: silent host = 2 attempts x 3 tries x 2 s banner timeout + backoff (2+4) x 2 + 2 s retry pause.
    assert wall < 60, wall
    assert proc.returncode == 1, proc.stderr[-3000:]
    by = validate_results(tmp_path / "res", [r["student"] for r in rows])
    assert graded_normally(by["good"]), by["good"]
    assert "unreachable" in by["down"]["error"] and "Unable to connect" in by["down"]["error"]
    assert "unreachable" in by["silent"]["error"]
    assert "authentication refused" in by["wrongkey"]["error"] and "key" in by["wrongkey"]["error"]
    assert "key file not found" in by["nokey"]["error"]
    print({k: (v["status"], v["error"], v["seconds"]) for k, v in by.items()}, "wall", wall)
    summary = (tmp_path / "res" / "summary.txt").read_text()
    assert "5 students: 1 graded, 4 not gradable" in summary


def test_sshd_killed_and_vm_rebooted_mid_run(tmp_path, farm, lab_prefix):
    """Sequential (exact verdicts): sshd and everything it started are killed while the agent runs;
    one host stays dead, the other "reboots" (sshd back 2 s later).  --retries 2."""
    good1, dead, rebooting, good2 = farm.add(), farm.add(), farm.add(), farm.add()
    agent = lab_prefix["agent"]
    ref = answers(tmp_path, "ref", reference())
    rows = [row("before", good1, agent, ref), row("killed", dead, agent, ref),
            row("rebooted", rebooting, agent, ref), row("after", good2, agent, ref)]
    roster = write_roster(tmp_path / "roster.yml", rows)
    faults = [MidRunFault(dead, after=1.5), MidRunFault(rebooting, after=1.5, restart_after=2)]
    for f in faults:
        f.start()
    try:
        proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                                "--parallel", 1, "--connect-timeout", 2, "--retries", 2, timeout=240)
    finally:
        for f in faults:
            f.stop_flag.set()
        wait_no_agents(lab_prefix["root"])
    assert all(f.fired.is_set() for f in faults), "a fault never fired"
    # Bound: 2 good runs + killed (cut + 3 attempts x ~6 s) + rebooted (cut + pause + one good run) < 90 s.
    assert wall < 90, wall
    assert proc.returncode == 1, proc.stderr[-3000:]
    by = validate_results(tmp_path / "res", [r["student"] for r in rows])
    for name in ("before", "after", "rebooted"):
        assert graded_normally(by[name]), (name, by[name])
    assert by["killed"]["status"] == "not_gradable"
    assert "unreachable" in by["killed"]["error"], by["killed"]["error"]


def test_a_row_without_a_key_says_so_at_once(tmp_path, farm, lab_prefix, monkeypatch):
    """A roster row with no key, on a machine with no SSH agent and no ~/.ssh/id_*: paramiko has nothing to offer
    ("No authentication methods available"), which was retried 3 times and reported as "host unreachable".  Now
    it is one not-gradable line that names the fix, and no retry."""
    host = farm.add()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    keyless = {k: v for k, v in row("keyless", host, lab_prefix["agent"],
                                    answers(tmp_path, "keyless", reference())).items() if k != "key"}
    roster = write_roster(tmp_path / "roster.yml", [keyless])
    proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                            "--connect-timeout", 2, "--retries", 1, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    by = validate_results(tmp_path / "res", ["keyless"])
    error = by["keyless"]["error"]
    assert "no key to log in" in error and "add key: PATH" in error and "unreachable" not in error, error
