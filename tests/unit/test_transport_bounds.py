"""SSH backend bounds without a network: the watchdog that closes a stuck transport, and the wait
for a job that was cut off before the next job starts on that host (the real thing runs in
tests/faults/test_transport_stalls.py)."""

import threading
import time

import pytest

from grader.backend import ssh
from grader.errors import HostError


class FakeTransport:
    def __init__(self):
        self.closed = threading.Event()

    def close(self):
        self.closed.set()


class FakeConn:
    def __init__(self):
        self.transport = FakeTransport()


def backend():
    b = ssh.SSHBackend("10.0.0.9", 22, "root")
    b.conn = FakeConn()
    return b


def test_a_step_that_never_returns_is_cut_off_by_closing_the_transport():
    b = backend()
    t0 = time.monotonic()
    with pytest.raises(HostError) as err:
        with b._deadline("exec request", 0.3):
            if not b.conn.transport.closed.wait(5):     # paramiko's wait ends when the transport closes
                raise AssertionError("the watchdog never closed the transport")
            raise EOFError("Channel closed.")
    assert time.monotonic() - t0 < 2
    assert err.value.kind == "connection" and "did not answer the exec request within 0.3s" in str(err.value)


def test_a_step_in_time_is_left_alone():
    b = backend()
    with b._deadline("channel open", 1):
        pass
    time.sleep(1.2)
    assert not b.conn.transport.closed.is_set()


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(ssh, "STALE_POLL", 0.05)
    monkeypatch.setattr(ssh, "_stale_jobs", {})


RUNNING, GONE, UNKNOWN = (0, "/proc/4242/cmdline\n", ""), (0, "", ""), (3, "", "")


def scripted(b, answers):
    """exec() answers the /proc check with the next of ``answers`` (the last repeats); records every command."""
    calls = []

    def fake_exec(command, timeout, cap=None):
        calls.append(command)
        if "/proc/1/cmdline" in command:
            return answers.pop(0) if len(answers) > 1 else answers[0]
        return 0, "", ""
    b.exec = fake_exec
    return calls


def test_next_job_waits_until_the_cut_off_one_is_gone(fast):
    b = backend()
    b._note_stale_job("bpfhol-job-0123456789abcdef0123", time.monotonic() + 10)
    calls = scripted(b, [RUNNING, RUNNING, RUNNING, GONE])
    b._settle_stale_job()
    greps = [c for c in calls if "/proc/1/cmdline" in c]
    assert len(greps) == 4 and "[b]pfhol-job-0123456789abcdef0123" in greps[0]
    assert calls == greps and not ssh._stale_jobs      # the job was never a folder: nothing to remove
    b._settle_stale_job()                              # nothing left to wait for
    assert len(calls) == 4


def test_a_cut_off_job_still_running_past_its_bound_is_busy(fast, monkeypatch):
    monkeypatch.setattr(ssh, "STALE_MIN_WAIT", 0.3)
    b = backend()
    b._note_stale_job("bpfhol-job-0123456789abcdef0123", time.monotonic())
    scripted(b, [RUNNING])
    t0 = time.monotonic()
    with pytest.raises(HostError) as err:
        b._settle_stale_job()
    assert err.value.kind == "busy" and "still runs" in str(err.value)
    assert 0.25 < time.monotonic() - t0 < 2
    assert ssh._stale_jobs                               # the next try waits for it too


def test_when_it_cannot_be_told_the_whole_bound_is_waited(fast, monkeypatch):
    monkeypatch.setattr(ssh, "STALE_MIN_WAIT", 0.4)
    b = backend()
    b._note_stale_job("bpfhol-job-0123456789abcdef0123", time.monotonic())
    scripted(b, [UNKNOWN])                              # no grep there, or /proc hides root's processes
    t0 = time.monotonic()
    b._settle_stale_job()
    assert 0.35 < time.monotonic() - t0 < 2 and not ssh._stale_jobs
