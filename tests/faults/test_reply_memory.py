"""Issue 21 item 2: a forged agent's reply inside the old 32 MiB cap (31.5 MiB of ``{}``) cost the
grader 1.6 GB, three at once 3.8 GB.  Now a reply is cut at what a truthful reply to that job can
need (grader.backend.reply_cap, ~8 MiB for default caps) and one holding more JSON values than a
truthful reply (200 000) is refused before it is parsed; both are that student's "not gradable",
and the honest student beside them at --parallel 16 is graded.  Peak memory: bench/reply_memory.py."""

import pytest

from faultkit import (FAULT_LAB, answers, fault_lab_reply_cap, graded_normally, hostile_reply_agent, job_bound,
                      reference, row, run_grader, validate_results, write_roster)

pytestmark = pytest.mark.faults


def test_costly_replies_are_refused_and_the_honest_student_is_graded(tmp_path, farm, lab_prefix):
    host = farm.add()
    real = lab_prefix["agent"]
    ref = answers(tmp_path, "ref", reference())
    cap = fault_lab_reply_cap()
    within = hostile_reply_agent(tmp_path / "agent-items", real, cap - 4096)        # fits the cap: counted, refused
    over = hostile_reply_agent(tmp_path / "agent-huge", real, int(31.5 * (1 << 20)))  # the reproduction: cut
    rows = [row("honest", host, real, ref)]
    rows += [row("items-%d" % i, host, within, ref) for i in range(7)]
    rows += [row("huge-%d" % i, host, over, ref) for i in range(8)]
    roster = write_roster(tmp_path / "roster.yml", rows)
    proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                            "--parallel", 16, "--connect-timeout", 5, timeout=job_bound() + 240)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    by = validate_results(tmp_path / "res", [r["student"] for r in rows])
    assert graded_normally(by["honest"]), by["honest"]
    for i in range(7):
        rec = by["items-%d" % i]
        assert rec["status"] == "not_gradable" and "more than 200000 JSON values" in rec["error"], rec
    for i in range(8):
        rec = by["huge-%d" % i]
        assert rec["status"] == "not_gradable" and "more than %d bytes" % cap in rec["error"], rec
