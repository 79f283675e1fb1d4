"""A student who is root on their VM can replace the agent and hand the grader any reply.  A forged
reply may lie about that student's own score, nothing else: lone surrogates ("\\ud800"), U+FFFE/U+FFFF,
C0/C1 controls and bytes that are not UTF-8, in the script output, in the compiler's message that
becomes feedback, in the host facts and in an error reply, must not stop the reports (junit.xml must
parse) nor change the exit code.  A journal that already holds such a line still loads and reports."""

import json

import pytest

from faultkit import (FAULT_LAB, POISON, RAW_BAD_UTF8, answers, assert_no_poison, forged_agent, graded_normally,
                      job_bound, reference, row, run_grader, validate_results, write_roster)

pytestmark = pytest.mark.faults


def test_forged_replies_with_poisoned_text_are_reported(tmp_path, farm, lab_prefix):
    host = farm.add()
    real = lab_prefix["agent"]
    ref = answers(tmp_path, "ref", reference())
    rows = [row("honest", host, real, ref),
            row("poisoned", host, forged_agent(tmp_path / "agent-output", real, "output"), ref),
            row("error-reply", host, forged_agent(tmp_path / "agent-error", real, "error"), ref)]
    roster = write_roster(tmp_path / "roster.yml", rows)
    proc, wall = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                            "--parallel", 1, "--connect-timeout", 3, timeout=job_bound() + 120)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])      # one not gradable: a normal run
    assert wall < job_bound(), wall      # a forged reply is dealt with when it arrives: nothing waits out a bound
    by = validate_results(tmp_path / "res", ["honest", "poisoned", "error-reply"])   # junit.xml parses
    assert_no_poison(tmp_path / "res")
    assert graded_normally(by["honest"]), by["honest"]
    assert by["poisoned"]["status"] == "graded"
    q2 = {e["id"]: e for e in by["poisoned"]["exercises"]}["q2"]
    assert q2["reason"] == "compile_error" and "\ufffd surrogate" in q2["feedback"], q2   # replaced, not dropped
    assert "\ufffd" in by["poisoned"]["facts"]["kernel"]
    assert by["error-reply"]["status"] == "not_gradable" and "lone \ufffd surrogate" in by["error-reply"]["error"]

    again, _ = run_grader("report", "--lab", FAULT_LAB, "--results", tmp_path / "res", timeout=60)
    assert again.returncode == 1 and "Traceback" not in again.stderr, again.stderr[-3000:]


def test_report_on_a_journal_with_poisoned_lines(tmp_path):
    """Lines written by an older grader (or edited by hand): a lone surrogate escape, bytes that are
    not UTF-8, U+FFFF; and lines of the wrong shape.  `report` keeps the good ones and writes valid reports."""
    res = tmp_path / "res"
    res.mkdir()
    ex = {"id": "q1", "title": "t", "passed": False, "score": 0, "max_score": 3, "reason": "compile_error",
          "feedback": POISON, "output_excerpt": POISON, "visible": True}
    good = {"student": "s-\ud800", "status": "graded", "score": 0, "max_score": 10, "exercises": [ex],
            "error": "", "host": "h", "facts": {"kernel": POISON}}
    ng = {"student": "ng", "status": "not_gradable", "error": "agent error: " + POISON}
    wrong_shape = [{"student": ["a list"], "status": "graded"}, {"student": "x", "status": "graded", "score": "ten"},
                   {"student": "y", "status": "graded", "exercises": [{"id": "q1", "score": "zero"}]}]
    lines = [json.dumps(good).encode(), json.dumps(ng).encode().replace(b"agent error", b"agent \xff\xfe error"),
             json.dumps(dict(ng, student="raw", error="ag\ufffeent @RAW@")).encode().replace(b"@RAW@", RAW_BAD_UTF8)]
    lines += [json.dumps(w).encode() for w in wrong_shape]
    (res / "journal.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    proc, wall = run_grader("report", "--lab", FAULT_LAB, "--results", res, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert wall < 20
    assert_no_poison(res, journal=False)          # the journal is the evidence: left as it was
    summary = (res / "summary.txt").read_text()
    assert "3 students: 1 graded, 2 not gradable" in summary, summary
    assert "s-\ufffd" in summary
