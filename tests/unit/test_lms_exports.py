"""Canvas and Moodle import CSVs: the vendors' documented headers (tests/fixtures/lms/), identities from the roster,
empty cells (never zeros) for students who could not be graded, inert cells, and written by write_all."""

import csv
import io
from pathlib import Path

from grader import grading
from grader.labspec import load_lab
from grader.reports import canvas, lms, moodle, write_all
from grader.roster import Entry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lms"


def rows(text):
    return list(csv.reader(io.StringIO(text)))


def results(lab):
    def graded(student, passed):
        exs = [grading.ExerciseResult(id=e.id, title=e.title, passed=passed or e.id == "q1",
                                      score=e.points if passed or e.id == "q1" else 0, max_score=e.points,
                                      reason="ok" if passed else "not_found",
                                      feedback="ok" if passed else "=HYPERLINK(\"x\") Your script printed no path.\nmore")
               for e in lab.exercises]
        return grading.StudentResult(student=student, status="graded", exercises=exs, max_score=lab.max_score,
                                     score=sum(e.score for e in exs))
    return [graded("alice", True), graded("bob", False), grading.not_gradable("carol", "host unreachable")]


def identities(tmp_path):
    return lms.remember(tmp_path, [
        Entry(student="alice", identity={"name": "Liddell, Alice", "email": "alice@example.edu", "lms_id": "11",
                                         "sis_id": "S1", "login": "alice01", "section": "CS 326-01"}),
        Entry(student="bob", identity={"email": "bob@example.edu", "login": "bob02"}),
        Entry(student="carol", identity={"email": "carol@example.edu"})], "Kprobes lab (4242)")


def test_canvas_csv_has_canvas_import_layout(tmp_path):
    lab = load_lab("kprobes")
    vendor = rows((FIXTURES / "canvas-gradebook-import.csv").read_text())
    ours = rows(canvas.render(results(lab), lab, identities(tmp_path)))
    assert ours[0][:5] == vendor[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert ours[0][5] == "Kprobes lab (4242)"                       # "Name (id)": the existing assignment
    assert ours[1][0] == vendor[1][0] == "    Points Possible" and ours[1][1:5] == ["", "", "", ""]
    assert float(ours[1][5]) == lab.max_score
    assert ours[2] == ["Liddell, Alice", "11", "S1", "alice01", "CS 326-01", "%g" % lab.max_score]
    assert ours[3][:5] == ["bob", "", "", "bob02", ""] and 0 < float(ours[3][5]) < lab.max_score
    assert ours[4] == ["carol", "", "", "", "", ""]                  # not gradable: left blank, never 0
    assert all(len(r) == len(vendor[0]) for r in ours)


def test_moodle_csv_has_moodle_import_columns(tmp_path):
    lab = load_lab("kprobes")
    vendor = rows((FIXTURES / "moodle-grade-import.csv").read_text())
    ours = rows(moodle.render(results(lab), lab, identities(tmp_path)))
    header = ours[0]
    assert header[:3] == vendor[0][:3] == ["First name", "Last name", "Email address"]
    assert header[3:] == ["Username", "ID number", "Kprobes lab (4242)", "Feedback for Kprobes lab (4242)"]
    by_email = {r[2]: dict(zip(header, r)) for r in ours[1:]}
    alice = by_email["alice@example.edu"]
    assert (alice["First name"], alice["Last name"], alice["Username"], alice["ID number"]) == (
        "Alice", "Liddell", "alice01", "S1")
    assert float(alice["Kprobes lab (4242)"]) == lab.max_score and "q1 " in alice["Feedback for Kprobes lab (4242)"]
    bob = by_email["bob@example.edu"]
    assert "Your script printed no path." in bob["Feedback for Kprobes lab (4242)"]
    assert "more" not in bob["Feedback for Kprobes lab (4242)"]      # the first line of each hint only
    assert "\n" not in bob["Feedback for Kprobes lab (4242)"]
    # not gradable: no row, so a re-import cannot clear a grade the teacher entered by hand
    assert "carol@example.edu" not in by_email and len(ours) == 3
    for r in ours[1:]:
        assert not any(cell.startswith(("=", "+", "@")) for cell in r), r


def test_write_all_writes_both_and_report_keeps_identities(tmp_path):
    lab = load_lab("kprobes")
    identities(tmp_path)
    lms.remember(tmp_path, [Entry(student="dave")])          # no identity: nothing forgotten, nothing invented
    write_all(results(lab), lab, tmp_path)
    assert rows((tmp_path / "canvas.csv").read_text())[2][3] == "alice01"
    assert rows((tmp_path / "moodle.csv").read_text())[1][2] == "alice@example.edu"
    assert lms.unmatched(results(lab), lms.load(tmp_path)) == []
    assert lms.default_assignment(lab) == "bpfhol kprobes"
    assert lms.load(tmp_path / "nowhere") == {"assignment": "", "students": {}}


def test_a_not_gradable_students_results_json_is_gradescopes_failure_form():
    from grader.reports import gradescope

    lab = load_lab("kprobes")
    alice, _, carol = results(lab)
    doc = gradescope.results_json(carol, lab)
    assert "score" not in doc and "tests" not in doc, doc            # neither: an autograder failure, not a 0
    assert doc["extra_data"]["bpfhol_status"] == "not_gradable" and "host unreachable" in doc["output"]
    graded = gradescope.results_json(alice, lab)
    assert graded["score"] == lab.max_score and len(graded["tests"]) == len(lab.exercises)
