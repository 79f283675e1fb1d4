"""The course workflow on a results folder, no VM: the lab a re-judge used is remembered (the 11/10 bug), one
question re-run or re-judged, `report --quiet`, a report beside a running grade, grade overrides, late penalties."""

import copy
import csv
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

from replay import HONEST, WRONG, ReplayBackend
from simulate import printf
from grader import grading
from grader.collect import mark_late
from grader.journal import Journal
from grader.labspec import load_lab
from grader.late import parse_penalty, penalize, reapply
from grader.questions import keep_other_questions

REPO = Path(__file__).resolve().parents[2]
TRACEPOINTS = REPO / "tests" / "fixtures" / "labs" / "tracepoints"


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "grader", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def _grade(lab, student, outputs=HONEST):
    scripts = {ex.id: ("upload", ex.script) for ex in lab.exercises}
    backend = ReplayBackend(outputs, source="%s:x {}" % lab.require_probe_types[0])
    result = grading.grade(backend, lab, student, scripts, rng=random.Random(student))
    result.max_score = lab.max_score
    return result


def _folder(tmp_path, lab, students=("ann", "ben")):
    results = tmp_path / "results"
    journal = Journal(results)
    for student in students:
        journal.record(_grade(lab, student), lab)
    journal.release()
    return results


def _rows(results):
    return [json.loads(line) for line in (results / "journal.jsonl").read_text().splitlines()]


def _last(results):
    return {r["student"]: r for r in _rows(results)}


def _copy_lab(tmp_path, name, q1_points=3):
    where = tmp_path / name / "tracepoints"
    shutil.copytree(TRACEPOINTS, where)
    spec = where / "lab.yaml"
    text = spec.read_text()
    at = text.index("  - id: q1")
    spec.write_text(text[:at] + text[at:].replace("points: 3", "points: %d" % q1_points, 1))
    return where


def test_a_rejudge_with_changed_points_is_what_a_later_report_and_grade_use(tmp_path):
    """The bug: `report --rejudge --lab COPY` (q1 3 -> 4 points), then a plain `report` judged the maximum by the lab
    the evidence named: a 10/10 student showed 11/10 and canvas.csv said Points Possible 10 beside 11."""
    first, changed = _copy_lab(tmp_path, "first"), _copy_lab(tmp_path, "changed", q1_points=4)
    results = _folder(tmp_path, load_lab(str(first)))
    rejudged = _cli("report", "--results", results, "--rejudge", "--lab", changed)
    assert rejudged.returncode == 0 and "2 verdicts changed" in rejudged.stderr, rejudged.stderr
    assert json.loads((results / "lab.json").read_text())["path"] == str(changed.resolve())

    plain = _cli("report", "--results", results)
    assert plain.returncode == 0, plain.stderr
    summary = (results / "summary.txt").read_text()
    assert "11/11" in summary and "11/10" not in summary, summary
    canvas = list(csv.reader(io.StringIO((results / "canvas.csv").read_text())))
    assert canvas[1][0].strip() == "Points Possible" and canvas[1][-1] == "11", canvas[:2]

    # the first lab's points beside the re-judged scores: refused, naming what works
    mixed = _cli("report", "--results", results, "--lab", first)
    assert mixed.returncode == 2 and mixed.stderr.count("\n") == 1, mixed.stderr
    assert "points differ" in mixed.stderr and "--lab %s" % changed.resolve() in mixed.stderr

    # a plain grade into the folder grades with the re-judge's lab too (the host is down: not gradable, max 11)
    roster = tmp_path / "r.yml"
    roster.write_text("students:\n- {student: cy, host: 127.0.0.1, port: 9, user: u, key: %s}\n" % roster)
    grade = _cli("grade", roster, "--results", results, "--connect-timeout", 1, "--retries", 0, "--quiet")
    assert grade.returncode == 1 and "unknown lab" not in grade.stderr, grade.stderr
    assert _last(results)["cy"]["status"] == "not_gradable" and _last(results)["cy"]["max_score"] == 11
    again = _cli("grade", roster, "--results", results, "--lab", first, "--connect-timeout", 1)
    assert again.returncode == 2 and "points differ" in again.stderr, again.stderr


def test_the_refusal_for_a_lab_graded_from_a_path_names_the_path(tmp_path):
    """A lab known only by its folder: '--lab tracepoints' (its name) would be an unknown lab."""
    lab_dir = _copy_lab(tmp_path, "mine")
    results = _folder(tmp_path, load_lab(str(lab_dir)), students=("ann",))
    wrong = _cli("report", "--results", results, "--lab", "kprobes")
    assert wrong.returncode == 2 and "pass --lab %s " % lab_dir.resolve() in wrong.stderr, wrong.stderr
    works = _cli("report", "--results", results, "--lab", lab_dir.resolve(), "--quiet")
    assert works.returncode == 0 and works.stdout == "", works.stdout + works.stderr


def test_rejudge_one_question_keeps_the_others(tmp_path):
    lab = load_lab(str(TRACEPOINTS))
    results = _folder(tmp_path, lab, students=("ben",))
    path = results / "students" / "ben" / _rows(results)[0]["evidence"]
    doc = json.loads(path.read_text())
    doc["reply"]["scripts"][0]["stdout"] = printf("/proc/uptime")          # q1 and q3 now judge as wrong
    doc["reply"]["scripts"][2]["stdout"] = printf("opens 12 closes 10")
    path.write_text(json.dumps(doc))
    bad = _cli("report", "--results", results, "--rejudge", "--question", "q9")
    assert bad.returncode == 2 and "lab tracepoints has no such question (its questions: q1, q2, q3)" in bad.stderr
    alone = _cli("report", "--results", results, "--question", "q3")
    assert alone.returncode == 2 and "--question goes with --rejudge" in alone.stderr
    one = _cli("report", "--results", results, "--rejudge", "--question", "q3", "--quiet")
    assert one.returncode == 0 and "1 verdicts changed" in one.stderr, one.stderr
    assert "q3" in one.stdout and " q1 " not in one.stdout
    ben = {e["id"]: e for e in _last(results)["ben"]["exercises"]}
    assert ben["q1"]["passed"] and not ben["q3"]["passed"] and _last(results)["ben"]["score"] == 6
    everything = _cli("report", "--results", results, "--rejudge", "--quiet")
    assert everything.returncode == 0 and "1 verdicts changed" in everything.stderr
    assert _last(results)["ben"]["score"] == 3


def test_a_rerun_question_is_judged_again_from_its_own_run(tmp_path):
    """grade --force --question q3 mixes two runs in one result: a later re-judge reads each verdict from the run
    that decided it (and so changes nothing)."""
    lab = load_lab(str(TRACEPOINTS))
    results = _folder(tmp_path, lab, students=("ann",))
    journal = Journal(results)
    first = journal.load()["ann"]
    rerun = _grade(lab, "ann", outputs=WRONG)
    merged = keep_other_questions(first, rerun, "q3")
    journal.record(merged, lab)
    journal.release()
    row = _last(results)["ann"]
    assert [e["passed"] for e in row["exercises"]] == [True, True, False] and row["score"] == 6
    assert row["question_evidence"] == {"q1": first.evidence, "q2": first.evidence}
    assert row["evidence"] != first.evidence
    same = _cli("report", "--results", results, "--rejudge", "--quiet")
    assert same.returncode == 0 and "0 verdicts changed" in same.stderr, same.stdout + same.stderr


def test_report_beside_a_running_grade_writes_a_snapshot_elsewhere(tmp_path):
    lab = load_lab(str(TRACEPOINTS))
    results = _folder(tmp_path, lab)
    assert _cli("report", "--results", results).returncode == 0
    before = (results / "summary.txt").stat().st_mtime_ns
    running = Journal(results)                                # the grade holds the folder
    try:
        running.record(_grade(lab, "cy", outputs=WRONG), lab)
        side = _cli("report", "--results", results, "--quiet")
        assert side.returncode == 0 and "in use by a running grade" in side.stderr, side.stderr
        assert "3 students: 3 graded" in (results / "snapshot" / "summary.txt").read_text()
        assert (results / "summary.txt").stat().st_mtime_ns == before
        assert "ann" in (results / "snapshot" / "students" / "ann" / "index.html").read_text()
        rejudge = _cli("report", "--results", results, "--rejudge")
        assert rejudge.returncode == 2 and "in use by another grader" in rejudge.stderr
        out = _cli("report", "--results", results, "--out", tmp_path / "elsewhere", "--quiet")
        assert out.returncode == 0 and (tmp_path / "elsewhere" / "canvas.csv").is_file(), out.stderr
    finally:
        running.release()


def test_overrides_are_recorded_and_every_report_honours_them(tmp_path):
    lab = load_lab(str(TRACEPOINTS))
    results = _folder(tmp_path, lab)
    (results / "lms.json").write_text(json.dumps({"students": {"ann": {"lms_id": "101"}, "ben": {"lms_id": "102"}}}))
    good = tmp_path / "overrides.csv"
    good.write_text("student,question,points,reason\nann,q3,2,regrade request: partial credit\n"
                    "ben,total,5,late without an extension\n")
    for text, error in [("student,question,points,reason\nzed,q1,1,x\n", "student 'zed' is not in the results"),
                        ("student,question,points,reason\nann,q3,9,x\n", "from 0 to 4 (q3's maximum)"),
                        ("student,question,points,reason\nann,q7,1,x\n", "question 'q7' is not one of"),
                        ("student,question,points,reason\nann,q1,1,\n", "give a reason"),
                        ("name,points\nann,1\n", "columns must be student,question,points,reason")]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        proc = _cli("report", "--results", results, "--overrides", bad)
        assert proc.returncode == 2 and error in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (results / "overrides.json").exists()

    taken = _cli("report", "--results", results, "--overrides", good, "--quiet")
    assert taken.returncode == 0 and "2 students' results changed" in taken.stderr, taken.stderr
    last = _last(results)
    assert last["ann"]["score"] == 8 and last["ben"]["score"] == 5
    assert last["ann"]["overrides"] == [{"question": "q3", "points": 2, "judged": 4, "judged_passed": True,
                                         "reason": "regrade request: partial credit"}]
    assert last["ben"]["overrides"][0]["judged"] == 10
    gradebook = {r[0]: r for r in csv.reader(io.StringIO((results / "gradebook.csv").read_text()))}
    assert float(gradebook["ann"][2]) == 8 and float(gradebook["ben"][2]) == 5, gradebook
    canvas = {r[1]: r[-1] for r in csv.reader(io.StringIO((results / "canvas.csv").read_text()))}
    assert float(canvas["101"]) == 8 and float(canvas["102"]) == 5, canvas
    ann = json.loads((results / "students" / "ann" / "results.json").read_text())
    assert ann["score"] == 8 and ann["tests"][2]["output"].startswith("Instructor override: 2 of 4 points")
    assert "Instructor override" in (results / "index.html").read_text() + \
        (results / "students" / "ann" / "index.html").read_text()

    # a re-judge keeps them (nothing changed), and taking the same file again records nothing
    same = _cli("report", "--results", results, "--rejudge", "--quiet")
    assert same.returncode == 0 and "0 verdicts changed" in same.stderr, same.stderr
    rows = len(_rows(results))
    again = _cli("report", "--results", results, "--overrides", good, "--quiet")
    assert again.returncode == 0 and "0 students' results changed" in again.stderr and len(_rows(results)) == rows
    # an empty file takes them back
    empty = tmp_path / "none.csv"
    empty.write_text("student,question,points,reason\n")
    assert _cli("report", "--results", results, "--overrides", empty, "--quiet").returncode == 0
    last = _last(results)
    assert last["ann"]["score"] == last["ben"]["score"] == 10 and not last["ann"]["overrides"]
    assert not any(e["feedback"].startswith("Instructor") for e in last["ann"]["exercises"])


def test_late_penalty_per_started_day_and_it_survives_a_rejudge():
    assert parse_penalty("10%/day") == (0.1, 86400) and parse_penalty("2.5%/hour") == (0.025, 3600)
    for bad in ("10", "10%/week", "0%/day", "150%/day"):
        try:
            parse_penalty(bad)
        except Exception as exc:  # noqa: BLE001
            assert "10%/day" in str(exc)
        else:
            raise AssertionError(bad)
    lab = load_lab(str(TRACEPOINTS))
    result = _grade(lab, "ann")
    deadline = 1_800_000_000
    manifest = {"collected_at": deadline + 9 * 86400, "host": "vm", "files": {
        "q1.bt": {"status": "ok", "mtime": deadline - 5, "sha256": "a"},
        "q2.bt": {"status": "ok", "mtime": deadline + 1.5 * 86400, "sha256": "b"},     # 2 started days: -20%
        "q3.bt": {"status": "ok", "mtime": deadline + 30 * 86400, "sha256": "c"}}}      # capped at -100%
    mark_late(result, lab, manifest, deadline, "flag", "10%/day")
    by = {e.id: e for e in result.exercises}
    assert (by["q1"].score, by["q2"].score, by["q3"].score) == (3, 2.4, 0) and result.score == 5.4
    assert by["q2"].feedback.startswith("late penalty: -0.6 points (10%/day x 2 days late")
    assert result.submitted["penalty"] == {"policy": "10%/day", "points": {"q2": 0.6, "q3": 4.0}}
    rejudged = reapply(_grade(lab, "ann"), copy.deepcopy(result))
    assert rejudged.score == 5.4 and rejudged.submitted["penalty"]["points"] == {"q2": 0.6, "q3": 4.0}
    fresh = _grade(lab, "bob")
    assert penalize(fresh, {"q1": deadline + 1}, deadline, "2%/hour") == {"q1": 0.06}


class _Replaying(ReplayBackend):
    """The grade_roster stand-in for a student's VM (connect/close as an SSH backend has)."""

    def connect(self):
        if self.outputs is None:
            raise grading.HostError("host unreachable", kind="auth")

    def close(self):
        pass


def test_grade_force_question_reruns_one_question_and_keeps_a_grade_a_dead_host_cannot_replace(tmp_path, monkeypatch):
    from grader import cohort
    from grader.roster import Entry

    lab = load_lab(str(TRACEPOINTS))
    results = _folder(tmp_path, lab, students=("ann", "ben"))
    before = _last(results)
    outputs = {"ann": WRONG, "ben": None}

    def backend_for(entry, options):
        return _Replaying(outputs[entry.student], source="tracepoint:x {}")

    monkeypatch.setattr(cohort, "backend_for", backend_for)
    entries = [Entry(student=s, host="h") for s in ("ann", "ben")]
    journal = Journal(results)
    try:
        cohort.grade_roster(lab, entries, journal, force=True, retries=0, question="q3", options={"quiet": True})
    finally:
        journal.release()
    after = _last(results)
    ann = {e["id"]: e for e in after["ann"]["exercises"]}
    assert ann["q1"]["passed"] and ann["q2"]["passed"] and not ann["q3"]["passed"] and after["ann"]["score"] == 6
    assert after["ann"]["question_evidence"] == {"q1": before["ann"]["evidence"], "q2": before["ann"]["evidence"]}
    assert after["ben"] == before["ben"]                       # not re-run: the graded result stands
    same = _cli("report", "--results", results, "--rejudge", "--quiet")
    assert same.returncode == 0 and "0 verdicts changed" in same.stderr, same.stderr
