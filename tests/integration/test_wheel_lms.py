"""Issue 33's LMS problems, through the installed wheel outside the checkout: a Canvas gradebook export (hosts
added) is the roster; one small cohort (two graded, one not gradable) is graded over loopback sshd with real
bpftrace; canvas.csv and moodle.csv go through the importers' matching rules (tests/lms_importers.py) and every
row lands on its own student; a `report` with --lms-points, a Canvas assignment id and another Moodle identifier
rewrites them; identities from a hostless roster (--lms-roster).  About 25 s."""

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from lms_importers import CanvasAssignment, CanvasUser, MoodleUser, canvas_import, moodle_import

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "tests" / "fixtures" / "labs" / "tracepoints" / "solutions"
NUMBER = re.compile(r"^(0|[1-9]\d*)(\.\d?[1-9])?$")


def run(cmd, cwd, env, timeout=300):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def table(path):
    return list(csv.reader(io.StringIO(path.read_text())))


def test_lms_files_from_a_canvas_export_roster_credit_every_grade_to_its_own_student(
        installed_with_deps, tmp_path, farm, lab_prefix, test_lab):
    where = installed_with_deps
    env, outside, grade = where["env"], where["outside"], where["bin"] / "bpfhol-grade"
    scripts = {"alice01": {p.name: p.read_text() for p in SOLUTIONS.glob("q*.bt")},
               "bob02": {"q2.bt": (SOLUTIONS / "q2.bt").read_text(),
                         "q3.bt": 'tracepoint:syscalls:sys_enter_openat { prntf("%d\\n", pid); }\n'},
               "dave04": {}}                                           # nothing handed in: not gradable
    folders = {}
    for student, files in scripts.items():
        folder = tmp_path / "answers" / student
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        folders[student] = folder
    hosts = [farm.add() for _ in range(2)]
    # Canvas's export, as Canvas writes it, with the columns the grader needs added on the right
    head = ("Student,ID,SIS User ID,SIS Login ID,Section,Quiz 1 (23),Current Score,host,port,user,key,agent,"
            "answers,Email,Username")

    def student(name, cid, sis, login, section, host, key, answers, email="", username=""):
        return ",".join(['"%s"' % name, cid, sis, login, section, "", "", "127.0.0.1", str(host.port), "root",
                         str(host.key), lab_prefix["agent"], str(answers), email, username])

    lines = [head, "    Points Possible,,,,,10.00,(read only),,,,,,,,",
             student("Liddell, Alice", "77", "2012", "alice01", "CS 326-01", hosts[0], hosts[0].key,
                     folders["alice01"]),
             student("Builder, Bob", "78", "", "", "CS 326-01", hosts[1], hosts[1].key, folders["bob02"],
                     "bob@example.edu", "bob02"),
             student("Dane, Dave", "80", "", "dave04", "CS 326-02", hosts[0], hosts[0].key, folders["dave04"],
                     "dave@example.edu"),
             '"Student, Test",99,,,CS 326-01,,,,,,,,,,']
    (outside / "canvas-export.csv").write_text("\r\n".join(lines) + "\r\n")

    proc = run([grade, "grade", "canvas-export.csv", "--lab", test_lab, "--parallel", "2", "--connect-timeout", "3",
                "--lms-assignment", "Tracepoints lab", "--moodle-match", "email"], cwd=outside, env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr                 # dave: not gradable, never a 0
    assert "Canvas gradebook export: left out its non-student rows (Points Possible, Student, Test)" in proc.stderr
    results = outside / "results" / "tracepoints"
    by = {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}
    assert set(by) == {"alice01", "bob02", "dave04"}, set(by)     # no "Points Possible", no Test Student
    assert by["dave04"]["status"] == "not_gradable" and all(by[s]["status"] == "graded" for s in ("alice01", "bob02"))
    assert "moodle.csv leaves out 1 of 2 graded students (alice01): see lms-left-out.txt" in proc.stdout
    assert "moodle.csv: import with Map from 'Email address', Map to 'Email address'" in proc.stdout
    assert "canvas.csv leaves out" not in proc.stdout

    # Canvas: every row credited to its own student by ID, in the one number format; dave has no row
    score = {s: by[s]["score"] for s in by}
    users = [CanvasUser(77, "Alice Liddell", "Liddell, Alice", "2012", "alice01"),
             CanvasUser(78, "Bob Builder", "Builder, Bob", "", "bob02"),
             CanvasUser(80, "Dave Dane", "Dane, Dave", "", "dave04")]
    owner = {77: "alice01", 78: "bob02", 80: "dave04"}
    got = canvas_import((results / "canvas.csv").read_text(), users)
    assert not got.error and [(a.title, a.points_possible) for a in got.assignments] == [("Tracepoints lab", "10")]
    credited = {owner[r.user.id]: r.grades["Tracepoints lab"] for r in got.rows}
    assert len(credited) == len(got.rows) == 2 and "dave04" not in credited
    for s, cell in credited.items():
        assert NUMBER.match(cell) and float(cell) == pytest.approx(score[s], abs=0.005), (s, cell)
    assert table(results / "canvas.csv")[2][:5] == ["Liddell, Alice", "77", "2012", "alice01", "CS 326-01"]

    # Moodle by email: alice (no email) and dave (not gradable) have no row; bob's feedback is whole
    musers = [MoodleUser(1, "", "alice01", "2012"), MoodleUser(2, "bob@example.edu", "bob02"),
              MoodleUser(4, "dave@example.edu", "dave04")]
    mowner = {1: "alice01", 2: "bob02", 4: "dave04"}
    got = moodle_import((results / "moodle.csv").read_text(), musers, "Email address", "useremail",
                        "Tracepoints lab", "Feedback for Tracepoints lab")
    assert not got.aborted, got.aborted
    moodle = {mowner[uid]: (grade_, fb) for _, uid, grade_, fb in got.grades}
    assert set(moodle) == {"bob02"} and moodle["bob02"][0] == pytest.approx(score["bob02"], abs=0.005)
    q3 = next(e for e in by["bob02"]["exercises"] if e["id"] == "q3")
    assert "\n" in q3["feedback"].strip() and q3["feedback"].strip() in moodle["bob02"][1], (q3, moodle["bob02"])
    left = (results / "lms-left-out.txt").read_text()
    assert "alice01: no Email address in the roster" in left and "neither file" in left and "dave04" in left
    book = list(csv.DictReader(io.StringIO((results / "gradebook.csv").read_text())))
    assert all(NUMBER.match(r[k]) for r in book for k in ("score", "max_score", "q1", "q2", "q3") if r[k]), book

    # report: the Canvas assignment's id and points, another Moodle identifier; a bad option is one line
    proc = run([grade, "report", "--results", "results/tracepoints", "--lms-points", "20", "--canvas-assignment",
                "Tracepoints lab (4242)", "--moodle-match", "username", "--moodle-assignment", "Lab 3"],
               cwd=outside, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = canvas_import((results / "canvas.csv").read_text(), users,
                        [CanvasAssignment("Tracepoints lab", 4242, "20")])
    assert [(a.title, a.id, a.points_possible) for a in got.assignments] == [("Tracepoints lab", 4242, "20")]
    scaled = {owner[r.user.id]: r.grades["Tracepoints lab"] for r in got.rows}      # a loaded host may cost a point
    assert float(scaled["alice01"]) == pytest.approx(score["alice01"] * 2, abs=0.005) and NUMBER.match(scaled["bob02"])
    got = moodle_import((results / "moodle.csv").read_text(), musers, "Username", "username", "Lab 3")
    assert not got.aborted and {mowner[uid]: g for _, uid, g, _ in got.grades} == {
        s: pytest.approx(score[s] * 2, abs=0.005) for s in ("alice01", "bob02")}
    bad = run([grade, "report", "--results", "results/tracepoints", "--lms-points", "ten"], cwd=outside, env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--lms-points ten is not a number" in bad.stderr

    # Identities from another roster (hosts not needed): bob with only an email is no Canvas match, and is said so
    (outside / "emails.yml").write_text("students:\n- {student: bob02, email: bob@example.edu}\n")
    proc = run([grade, "report", "--results", "results/tracepoints", "--lms-roster", "emails.yml"], cwd=outside,
               env=env)
    assert "canvas.csv leaves out 1 of 2 graded students (bob02): see lms-left-out.txt" in proc.stdout, proc.stdout
    assert "bob02: no Canvas ID, SIS User ID or SIS Login ID in the roster (Canvas does not match by email)" in (
        results / "lms-left-out.txt").read_text()
    assert [r.user.id for r in canvas_import((results / "canvas.csv").read_text(), users).rows] == [77]
