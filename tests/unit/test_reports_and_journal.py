import csv
import io
import json

from grader import grading
from grader.journal import Journal, slug
from grader.labspec import load_lab
from grader.reports import clean, csv_report, html_report, junit, write_all

EVIL = "<script>alert(1)</script>\x1b[31mRED\x1b[0m =cmd|' /C calc'!A0"


def _result(student, passed=True):
    lab = load_lab("kprobes")
    exs = [grading.ExerciseResult(id=e.id, title=e.title, passed=passed, score=e.points if passed else 0,
                                  max_score=e.points, reason="ok" if passed else "not_found", feedback=EVIL,
                                  output_excerpt=EVIL) for e in lab.exercises]
    r = grading.StudentResult(student=student, status="graded", exercises=exs, max_score=lab.max_score,
                              score=sum(e.score for e in exs))
    return lab, r


def test_student_text_is_inert_in_html_csv_junit():
    lab, r = _result(EVIL, passed=False)
    ng = grading.not_gradable("=HYPERLINK(\"http://x\")", EVIL)
    page = html_report.render([r, ng], lab)
    assert page.count("<script") == 1 and page.index("<script>") > page.index("</table>")     # only the page's own
    assert "\x1b" not in page and "&lt;script&gt;" in page
    student = html_report.render_student(r, lab)
    assert "<script" not in student and "\x1b" not in student and "&lt;script&gt;" in student
    rows = list(csv.reader(io.StringIO(csv_report.render([r, ng], lab))))
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), cell
            assert "\x1b" not in cell
    xml = junit.render([r, ng], lab)
    assert "<script>" not in xml and "\x1b" not in xml
    assert clean("a\x1b[2Jb\x07c") == "abc"


def test_journal_resumes_and_ignores_a_cut_line(tmp_path):
    lab, r = _result("alice")
    j = Journal(tmp_path)
    j.record(r, lab)
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"student": "bob", "status": "gra')     # a crash mid-write
    done = Journal(tmp_path).load()
    assert list(done) == ["alice"] and done["alice"].score == lab.max_score
    gs = json.loads((tmp_path / "students" / "alice" / "results.json").read_text())
    assert gs["score"] == lab.max_score and [t["status"] for t in gs["tests"]] == ["passed"] * len(lab.exercises)
    write_all(list(done.values()), lab, tmp_path)
    assert (tmp_path / "index.html").is_file() and (tmp_path / "gradebook.csv").is_file()


def test_slug_is_safe_and_unique():
    assert slug("alice") == "alice"
    for evil in ["../../etc", "a b", "x; touch /tmp/pwned", ".", "", "é"]:
        s = slug(evil)
        assert "/" not in s and " " not in s and ";" not in s and not s.startswith(".")
    assert slug("a b") != slug("a_b")
