"""Every check, judged on REAL recorded agent replies (real bpftrace JSON + ground truth).

Recordings live in tests/fixtures/bpftrace/<bpftrace version>/<lab>-<case>.json and are made by
tests/fixtures/record.py: 0.17 on this host (tracepoints test lab), 0.23 (Debian 13) and 0.17
(Debian 12) on lab VMs (kprobes lab), with the agent's start barrier (agent version 2): the
reference, the correct variants (variants_*), the cheats and the broken scripts.  A case's expected reasons below are what a careful instructor would conclude.
"""

import json
from pathlib import Path

import pytest

from grader import grading
from grader.labspec import load_lab

FIX = Path(__file__).resolve().parents[1] / "fixtures"
LABS = {"tracepoints": str(FIX / "labs" / "tracepoints"), "kprobes": "kprobes"}
from expected_verdicts import EXPECTED  # noqa: E402

RECORDINGS = sorted(FIX.glob("bpftrace/*/*.json"))


def _judge(path):
    """(case name, lab, result) for one recorded agent reply."""
    lab_name, case = path.stem.split("-", 1)
    lab = load_lab(LABS[lab_name])
    return case, lab, grading.evaluate(lab, "student", json.loads(path.read_text()))


def test_recordings_cover_both_bpftrace_generations():
    """Debian 12's bpftrace 0.17 and Debian 13's 0.23 print different JSON; every case is recorded
    from a real kprobes lab VM for both, and from this host (tracepoints lab) for 0.17."""
    have = {(p.parent.name.rsplit(".", 1)[0], p.stem) for p in RECORDINGS}
    for case in EXPECTED:
        assert ("0.23", "kprobes-" + case) in have, case
        assert ("0.17", "kprobes-" + case) in have, case
    assert {("0.17", "tracepoints-" + c) for c in ("reference", "wrong", "cheat", "broken")} <= have


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: "%s/%s" % (p.parent.name, p.stem))
def test_recorded_case_verdicts(path):
    case, lab, result = _judge(path)
    got = {e.id: e.reason for e in result.exercises}
    for ex_id, allowed in EXPECTED[case].items():
        if ex_id not in {ex.id for ex in lab.exercises}:
            continue            # e.g. the host's tracepoints test lab has q1-q3 only (q4 needs kprobes' VMs)
        assert got[ex_id] in allowed, (ex_id, got[ex_id], [e.feedback for e in result.exercises if e.id == ex_id])
    if all(allowed == {"ok"} for allowed in EXPECTED[case].values()):     # the reference and the variants
        assert result.score == lab.max_score
    else:
        assert result.score < lab.max_score


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: "%s/%s" % (p.parent.name, p.stem))
def test_feedback_never_reveals_the_answer(path):
    """Failed exercises must not print the path the workload opened (students read feedback)."""
    _, _, result = _judge(path)
    for e in result.exercises:
        if not e.passed:
            assert result.workload["file"] not in e.feedback


def test_hint_for_user_pointer_mentions_uptr():
    lab = load_lab("kprobes")
    hint = [ex for ex in lab.exercises if ex.id == "q1"][0].hints["empty_path"]
    assert "uptr" in hint
