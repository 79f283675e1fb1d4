"""A run of more than 4300 digits in a student's output (Python's int() limit) made the whole student "not
gradable: grader error: ValueError: Exceeds the limit (4300 digits)" on every rerun.  Reproduction from the
issue: one `unroll(100) printf("1111...")` in BEGIN (bpftrace 0.17 on this host), beside honest answers."""

import json

import pytest

from faultkit import FAULT_LAB, answers, reference, row, run_grader, write_roster

pytestmark = pytest.mark.faults

DIGITS = 'BEGIN { unroll(100) { printf("%s"); } printf("\\n"); }\n' % ("1" * 50)      # one 5000-digit line


def test_a_5000_digit_line_is_judged_not_a_grader_error(tmp_path, farm, lab_prefix):
    host = farm.add()
    ref = reference()
    scripts = dict(ref, **{name: DIGITS + text for name, text in ref.items()})
    roster = write_roster(tmp_path / "r.yml", [row("digits", host, lab_prefix["agent"],
                                                   answers(tmp_path, "digits", scripts))])
    proc, _ = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", tmp_path / "res", "--parallel", 1)
    [rec] = [json.loads(line) for line in (tmp_path / "res" / "journal.jsonl").read_text().splitlines()]
    assert rec["status"] == "graded", rec.get("error")
    assert "ValueError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # the digits are a number no workload returned: the correct answers beside them still pass
    by = {e["id"]: e for e in rec["exercises"]}
    assert by["q1"]["passed"], by["q1"]
    assert proc.returncode == 0, proc.stderr[-2000:]
