"""Issue 21 item 3, reproduced as the instructor met it: two `grade` runs on one results folder both ended
exit 0 and graded every student twice (16 journal lines for 8 students, each VM running two jobs).  Now
the folder belongs to one grader at a time: a second run exits 2 in one line naming the holder, a run with
--wait queues behind it and then finds every student graded, so each student's VM runs exactly one job.

Item 6's key check, through the CLI: a .pub given as the key of one row makes that student "not gradable"
with the fix named, at once, without a single connection attempt (it was retried 3 times as unreachable).
"""

import subprocess
import time

import pytest

from faultkit import (FAULT_LAB, REPO, answers, grader_cmd, graded_normally, job_intervals, logging_agent, reference, row,
                      run_grader, validate_results, wait_no_agents, write_roster)

pytestmark = pytest.mark.faults

STUDENTS = ["ann", "ben", "cat", "dan"]


def _start(*args):
    return subprocess.Popen(grader_cmd(*args), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_holder(results, proc, bound=60):
    lock = results / ".grader.lock"
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if lock.exists() and ('"pid": %d' % proc.pid) in lock.read_text():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the first grader never took the results folder")


def test_two_graders_on_one_folder_grade_each_student_once(tmp_path, farm, lab_prefix):
    host = farm.add()
    agent = logging_agent(tmp_path / "agent", lab_prefix["agent"])
    ref = answers(tmp_path, "ref", reference())
    roster = write_roster(tmp_path / "roster.yml", [row(s, host, agent, ref) for s in STUDENTS])
    results = tmp_path / "res"
    args = ("grade", roster, "--lab", FAULT_LAB, "--results", results, "--parallel", 2, "--connect-timeout", 3)
    first = _start(*args)
    try:
        _wait_for_holder(results, first)
        second, wall = run_grader(*args, timeout=60)
        queued = _start(*args, "--wait")
        out, err = first.communicate(timeout=300)
        q_out, q_err = queued.communicate(timeout=300)
    finally:
        for p in (first,):
            if p.poll() is None:
                p.kill()
        wait_no_agents(lab_prefix["root"])
    # the second run: one line naming the holder and both ways out, at once, and nothing written
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert "in use by another grader (pid %d on " % first.pid in lines[0], lines
    assert "--wait" in lines[0] and "--results" in lines[0], lines
    assert wall < 30, wall
    # the first run graded everyone; the queued run waited, then found nothing left to grade
    assert first.returncode == 0, err[-3000:]
    assert queued.returncode == 0 and "waiting for the grader holding" in q_err, q_err[-3000:]
    journal = (results / "journal.jsonl").read_text().splitlines()
    assert len(journal) == len(STUDENTS), journal
    by = validate_results(results, STUDENTS)
    assert all(graded_normally(by[s]) for s in STUDENTS), by
    jobs = job_intervals(agent)
    assert len(jobs) == len(STUDENTS), jobs                     # one job per student's VM, never two


def test_a_public_key_in_a_row_is_named_and_never_tried(tmp_path, farm, lab_prefix):
    host = farm.add()
    agent = logging_agent(tmp_path / "agent", lab_prefix["agent"])
    ref = answers(tmp_path, "ref", reference())
    pub = tmp_path / "id_ed25519.pub"
    pub.write_text(subprocess.run(["ssh-keygen", "-y", "-f", host.key], capture_output=True, text=True,
                                  check=True, timeout=30).stdout)
    rows = [row("good", host, agent, ref), row("pubkey", host, agent, ref, key=str(pub))]
    roster = write_roster(tmp_path / "roster.yml", rows)
    proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                            "--connect-timeout", 3, "--retries", 2, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    by = validate_results(tmp_path / "res", ["good", "pubkey"])
    assert graded_normally(by["good"]), by["good"]
    rec = by["pubkey"]
    assert rec["status"] == "not_gradable", rec
    assert "is a public key: give the private key (%s)" % str(pub)[:-4] in rec["error"], rec["error"]
    assert "unreachable" not in rec["error"] and rec["seconds"] < 2, rec
    assert len(job_intervals(agent)) == 1                        # only the good student's VM ran a job
