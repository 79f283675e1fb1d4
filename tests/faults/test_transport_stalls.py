"""The transport under peers that stop answering, and jobs that outlive their connection.

- An sshd that logs in and then never answers a channel open or an exec request (a frozen VM, a
  laptop lid closed): every step has a deadline, the student is "not gradable: <host> did not answer
  the <step> ...", the others are graded, the run ends in time.  (The SFTP step is gone since agent 6:
  a job goes to the agent's stdin once it holds the lock; that send has its own deadline.)
- A connection cut while the agent runs (the agent runs on): the retry waits for that agent to end
  instead of starting a second job beside it.  Same for a VM whose job timed out in submissions mode.
- An agent that answers "busy" (its lock is held): retried after a pause; busy for good is said so.
"""

import subprocess
import time

import pytest

from faultkit import (FAULT_LAB, PYTHON, REPO, MidRunFault, answers, assert_never_overlap, cut_sessions,
                      graded_normally, job_intervals, logging_agent, reference, row, run_grader, tight_lab,
                      validate_results, wait_no_agents, write_roster)
from stuck_ssh import StuckSSHServer

pytestmark = pytest.mark.faults

# The grader's outer bound of one job, set for the one test that must outlast it (grader.grading.job_timeout;
# the fault lab's own bounds add up to 206 s even in tight_lab, all of which that test waited out).  Enough for
# a job that waits out the agent's 20 s lock wait (tight_lab: another loopback run holds the host-wide lock)
# and then runs (about 6 s), so only the job made to linger is cut off.
SHORT_JOB_BOUND = 40


def run_grader_with_job_bound(bound, *args, timeout):
    """The CLI (``python -m grader``) with grader.grading.job_timeout replaced by ``bound`` seconds: the same
    code path, a bound a test can outlast in seconds.  Returns (CompletedProcess, wall seconds)."""
    code = ("import sys, grader.grading as grading, grader.__main__ as cli; "
            "assert callable(grading.job_timeout), 'grader.grading.job_timeout is gone: update this test'; "
            "grading.job_timeout = lambda job: %d; sys.exit(cli.run(sys.argv[1:]))" % bound)
    t0 = time.monotonic()
    proc = subprocess.run([PYTHON, "-c", code, *[str(a) for a in args]], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.monotonic() - t0


def test_ssh_steps_that_never_answer_are_cut_off(tmp_path, farm, lab_prefix):
    good = farm.add()
    stuck = {mode: StuckSSHServer(mode) for mode in ("channel", "exec")}
    agent = lab_prefix["agent"]
    ref = answers(tmp_path, "ref", reference())
    rows = [row("good", good, agent, ref)]
    rows += [dict(row("stuck-" + mode, good, agent, ref), port=srv.port) for mode, srv in stuck.items()]
    roster = write_roster(tmp_path / "roster.yml", rows)
    try:
        proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                                "--parallel", 4, "--connect-timeout", 3, "--retries", 1, timeout=150)
    finally:
        for srv in stuck.values():
            srv.close()
    # Bound: per stuck host 2 attempts x (login + a 3 s step deadline) + a 3 s pause, in parallel
    # with the good student's run (about 6 s): seen 15-20 s.
    assert wall < 45, wall
    assert proc.returncode == 1, proc.stderr[-3000:]
    by = validate_results(tmp_path / "res", [r["student"] for r in rows])
    print({k: (v["status"], v["error"], v["seconds"]) for k, v in by.items()}, "wall", wall)
    assert graded_normally(by["good"]), by["good"]
    for mode, step in (("channel", "channel open"), ("exec", "exec request")):
        rec = by["stuck-" + mode]
        assert rec["status"] == "not_gradable", rec
        assert "did not answer the %s within 3s" % step in rec["error"], rec["error"]
        assert stuck[mode].connections == 2                        # tried again once (--retries 1), then gave up


def test_lost_connection_retry_waits_for_the_old_agent(tmp_path, farm, lab_prefix):
    """The link dies 1.5 s into the agent run but the agent runs on (only sshd's session
    processes are killed).  The retry must not start a second job while it runs."""
    host = farm.add()
    agent = logging_agent(tmp_path / "agent", lab_prefix["agent"])
    rows = [row("cut", host, agent, answers(tmp_path, "ref", reference()))]
    roster = write_roster(tmp_path / "roster.yml", rows)
    fault = MidRunFault(host, after=1.5, cut=cut_sessions)
    fault.start()
    try:
        proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                                "--parallel", 1, "--connect-timeout", 3, "--retries", 1, timeout=120)
    finally:
        fault.stop_flag.set()
        wait_no_agents(lab_prefix["root"])
    assert fault.fired.is_set()
    assert proc.returncode == 0, proc.stderr[-3000:]
    by = validate_results(tmp_path / "res", ["cut"])
    assert graded_normally(by["cut"]), by["cut"]
    jobs = job_intervals(agent)
    print("jobs", jobs, "wall", wall)
    assert len(jobs) == 2, jobs
    assert_never_overlap(jobs)
    assert wall < 40, wall                 # two runs of about 6 s, the pause and the wait in between


def test_timed_out_vm_takes_the_next_submission_only_when_its_job_ended(tmp_path, farm, lab_prefix):
    """Submissions mode, one VM: the first job outlives the grader's bound (the stand-in sleeps
    past it, then runs the real agent).  The VM must not get the next student before that job ends."""
    import yaml

    vm = farm.add()
    lab = tight_lab(tmp_path / "lab")
    bound = SHORT_JOB_BOUND
    agent = logging_agent(tmp_path / "agent", lab_prefix["agent"], linger=bound + 2)
    subs = tmp_path / "SUBMISSIONS"
    for name in ("a-slow", "b-next"):
        (subs / name).mkdir(parents=True)
        for fname, text in reference().items():
            (subs / name / fname).write_text(text)
    vms = tmp_path / "vms.yml"
    vms.write_text(yaml.safe_dump({"students": [{"student": "vm", "host": "127.0.0.1", "port": vm.port,
                                                 "user": "root", "key": vm.key, "agent": agent}]}))
    try:
        proc, wall = run_grader_with_job_bound(bound, "submissions", subs, "--vms", vms, "--lab", lab, "--results",
                                               tmp_path / "res", "--connect-timeout", 3, timeout=bound + 120)
    finally:
        wait_no_agents(lab_prefix["root"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    by = validate_results(tmp_path / "res", ["a-slow", "b-next"])
    assert by["a-slow"]["status"] == "not_gradable", by["a-slow"]
    assert "did not finish within %ds" % bound in by["a-slow"]["error"], by["a-slow"]["error"]
    assert graded_normally(by["b-next"]), by["b-next"]
    jobs = job_intervals(agent)
    print("jobs", jobs, "wall", wall, "bound", bound)
    assert len(jobs) == 2, jobs
    assert_never_overlap(jobs)
    # The bound, the old job's remaining ~8 s (2 s + its real run), the next student's ~6 s.
    assert bound < wall < bound + 45, (wall, bound)


def test_busy_agent_is_retried_after_a_pause(tmp_path, farm, lab_prefix):
    host = farm.add()
    ref = answers(tmp_path, "ref", reference())
    once = logging_agent(tmp_path / "busy-once", lab_prefix["agent"], busy=1)
    always = logging_agent(tmp_path / "busy-always", lab_prefix["agent"], busy=99)
    rows = [row("busy-once", host, once, ref), row("busy-always", host, always, ref)]
    roster = write_roster(tmp_path / "roster.yml", rows)
    proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                            "--parallel", 2, "--connect-timeout", 3, "--retries", 1, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    by = validate_results(tmp_path / "res", ["busy-once", "busy-always"])
    print({k: (v["status"], v["error"]) for k, v in by.items()}, "wall", wall)
    assert graded_normally(by["busy-once"]), by["busy-once"]
    assert by["busy-always"]["status"] == "not_gradable" and "host busy" in by["busy-always"]["error"]
    assert (tmp_path / "busy-always.log.count").read_text().strip() == "2"     # asked twice, 15 s apart
    assert 15 <= wall < 45, wall
