"""A journal line cut short (grader killed mid-write, or a short write on a full disk) must
never swallow the NEXT result: the rerun's line has to start on a line of its own."""

import json

import pytest

from grader.grading import StudentResult
from grader.journal import Journal
from grader.labspec import load_lab
from faultkit import FAULT_LAB

pytestmark = pytest.mark.faults


def result(name):
    return StudentResult(student=name, status="graded", score=1, max_score=10, graded_at=1.0)


def test_torn_line_does_not_eat_the_next_result(tmp_path):
    lab = load_lab(str(FAULT_LAB))
    journal = Journal(tmp_path)
    journal.record(result("alice"), lab)
    with open(tmp_path / "journal.jsonl", "a") as fh:       # what a kill in the middle of a write leaves
        fh.write('{"student": "bob", "status": "gra')
    journal.record(result("carol"), lab)
    done = Journal(tmp_path).load()
    assert set(done) == {"alice", "carol"}                # bob is regraded; carol is NOT lost
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["student"] == "carol"


def test_short_write_leaves_no_partial_line(tmp_path, monkeypatch):
    import grader.journal as jmod

    lab = load_lab(str(FAULT_LAB))
    journal = Journal(tmp_path)
    journal.record(result("alice"), lab)
    real_write = jmod.os.write

    def short(fd, data):                                  # a full disk: only part of the line fits
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(jmod.os, "write", short)
    with pytest.raises(jmod.WriteError, match="cannot write results"):
        journal.record(result("bob"), lab)
    monkeypatch.setattr(jmod.os, "write", real_write)
    text = (tmp_path / "journal.jsonl").read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    journal.record(result("carol"), lab)
    assert set(Journal(tmp_path).load()) == {"alice", "carol"}
