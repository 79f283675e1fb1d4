"""Canvas and Moodle import CSVs fed through the importers' own matching rules (tests/lms_importers.py, read from
canvas-lms and moodle source): every row is credited to its own student or is not in the file; who is left out is
listed with the fix; one number format across gradebook.csv, canvas.csv and moodle.csv; the vendors' headers
(tests/fixtures/lms/); Gradescope's failure form for a student who could not be graded."""

import csv
import io
import re
from pathlib import Path

from lms_importers import (CanvasAssignment, CanvasUser, MoodleUser, canvas_changes, canvas_import,
                           moodle_import)

from grader import grading
from grader.labspec import load_lab
from grader.reports import canvas, lms, moodle, write_all
from grader.roster import Entry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lms"
MULTILINE = "=HYPERLINK(\"x\") Your script printed no path.\nbpftrace could not attach your probes on this host:\n" \
            "ERROR: kprobe:do_nanosleep not found"

# student -> (identity, score or None for not gradable)
COHORT = {
    "alice": ({"name": "Liddell, Alice", "email": "alice@example.edu", "lms_id": "11", "sis_id": "S1",
               "login": "alice01", "section": "CS 326-01"}, 13),
    "bob": ({"email": "bob@example.edu", "login": "bob02"}, 7),
    "carol": ({"email": "carol@example.edu", "lms_id": "13"}, None),
    "dave": ({"email": "dave@example.edu"}, 6.6667),                  # email alone: not a Canvas match
    "erin": ({"email": "erin@example.edu", "lms_id": "9abc"}, 3),     # Canvas would read user 9
    "frank": ({"email": "frank@example.edu", "lms_id": "21", "login": "shared01"}, 10),
    "gina": ({"email": "gina@example.edu", "lms_id": "22", "login": "shared01"}, 4),
    "hank": ({"name": "Points Possible, Hank", "email": "hank@example.edu", "sis_id": "H1"}, 1),
    "ann1": ({"name": "Smith, Ann", "email": "ann1@example.edu", "sis_id": "A1"}, 12),
    "ann2": ({"name": "Smith, Ann", "email": "ann2@example.edu", "sis_id": "A2"}, 2),
    "ivan": ({}, 5),
    "jo": ({"email": "jo@example.edu", "login": "-jo"}, 8),
    "kim": ({"email": "kim@example.edu", "lms_id": "0", "sis_id": "0"}, 9),       # "0": blank to Moodle's PHP
}
CANVAS_CREDITED = {"alice", "bob", "hank", "ann1", "ann2"}
MOODLE_BY_EMAIL = {s for s, (who, score) in COHORT.items() if who.get("email") and score is not None}


def rows(text):
    return list(csv.reader(io.StringIO(text)))


def result(lab, student, score):
    if score is None:
        return grading.not_gradable(student, "host unreachable")
    exs, left = [], score
    for e in lab.exercises:
        got = min(e.points, left)
        left -= got
        exs.append(grading.ExerciseResult(id=e.id, title=e.title, passed=got == e.points, score=got,
                                          max_score=e.points, reason="ok" if got == e.points else "wrong",
                                          feedback="ok" if got == e.points else MULTILINE))
    return grading.StudentResult(student=student, status="graded", exercises=exs, max_score=lab.max_score,
                                 score=score)


def cohort(tmp_path, **settings):
    lab = load_lab("kprobes")
    lms.remember(tmp_path, [Entry(student=s, identity=who) for s, (who, _) in COHORT.items()], "Kprobes lab",
                 **settings)
    results = [result(lab, s, score) for s, (_, score) in COHORT.items()]
    write_all(results, lab, tmp_path)
    return lab, results


def canvas_users():
    """The course as Canvas holds it: each student a user with the roster's ids (a user id for everyone)."""
    users = []
    for n, (student, (who, _)) in enumerate(COHORT.items()):
        uid = int(who["lms_id"]) if who.get("lms_id", "").isdigit() else 500 + n
        users.append(CanvasUser(id=uid, name=who.get("name") or student, sortable_name=who.get("name") or student,
                                sis_user_id=who.get("sis_id", ""), login_id=who.get("login", "")))
    users.append(CanvasUser(id=9, name="Decoy, Nine"))          # the user "9abc" would have named
    return users


def expected_cell(score, out_of, points):
    return ("%.2f" % round(score * points / out_of, 2)).rstrip("0").rstrip(".")


def test_every_canvas_row_is_credited_to_its_own_student(tmp_path):
    lab, results = cohort(tmp_path, canvas_assignment="Kprobes lab (4242)")
    users = canvas_users()
    owner = {u.id: s for u, s in zip(users, COHORT)}
    text = (tmp_path / "canvas.csv").read_text()
    got = canvas_import(text, users, [CanvasAssignment("Kprobes lab", 4242, "13")])
    assert not got.error
    assert [(a.title, a.id, a.points_possible) for a in got.assignments] == [("Kprobes lab", 4242, "13")]
    assert got.skipped == [(2, "Points Possible")]
    credited = {}
    for row in got.rows:
        assert row.user is not None, row                        # no unknown student to map by hand
        student = owner[row.user.id]
        assert student not in credited, student                 # one row per student
        credited[student] = row.grades["Kprobes lab"]
    assert set(credited) == CANVAS_CREDITED
    for student, cell in credited.items():
        assert cell == expected_cell(COHORT[student][1], 13, 13), (student, cell)
    # carol could not be graded: her Canvas score (5) is left as it is, and nobody else's changes but the credited
    current = {(13, "Kprobes lab"): "5", (11, "Kprobes lab"): "13"}
    changes = canvas_changes(got, current)
    assert (13, "Kprobes lab") not in changes and (11, "Kprobes lab") not in changes
    assert {owner[uid] for uid, _ in changes} == CANVAS_CREDITED - {"alice"}
    left = (tmp_path / lms.LEFT_OUT_FILE).read_text()
    assert "canvas.csv: 5 of 12 graded students" in left
    assert re.search(r"dave: no Canvas ID, SIS User ID or SIS Login ID in the roster \(Canvas does not match by "
                     r"email\); fix: put lms_id, sis_id or login in their roster row", left)
    assert "erin: Canvas ID '9abc' is not a Canvas user ID" in left and "kim: Canvas ID '0' is not" in left
    assert "frank: shares SIS Login ID shared01 with gina" in left and "gina: shares SIS Login ID shared01" in left
    assert "ivan: no Canvas ID" in left and "jo: identifier '-jo' starts like a spreadsheet formula" in left
    assert "not gradable, in neither file (their LMS grade is left as it is): carol" in left


def test_every_moodle_row_is_credited_to_its_own_student_with_its_whole_feedback(tmp_path):
    lab, results = cohort(tmp_path)
    users = [MoodleUser(id=100 + n, email=who.get("email", ""), username=who.get("login", ""),
                        idnumber=who.get("sis_id", "")) for n, (who, _) in enumerate(COHORT.values())]
    owner = {100 + n: s for n, s in enumerate(COHORT)}
    text = (tmp_path / "moodle.csv").read_text()
    header = rows(text)[0]
    assert header == ["First name", "Last name", "Email address", "Kprobes lab", "Feedback for Kprobes lab"]
    got = moodle_import(text, users, "Email address", "useremail", "Kprobes lab", "Feedback for Kprobes lab")
    assert not got.aborted, got.aborted
    credited = {owner[uid]: (grade, fb) for _, uid, grade, fb in got.grades}
    assert len(credited) == len(got.grades) and set(credited) == MOODLE_BY_EMAIL
    for student, (grade, fb) in credited.items():
        assert grade == round(COHORT[student][1], 2), (student, grade)
    grade, fb = credited["bob"]
    assert "q1 3/3 passed" in fb and "q3 1/4: " in fb and "q4 0/3: " in fb
    assert "bpftrace could not attach your probes on this host:\nERROR: kprobe:do_nanosleep not found" in fb
    assert not any(line.startswith(("=", "+", "@")) for line in rows(text)[1][4].splitlines()[:1])
    left = (tmp_path / lms.LEFT_OUT_FILE).read_text()
    assert "moodle.csv: 11 of 12 graded students (import it with Map from 'Email address', Map to 'Email address')" \
        in left and "ivan: no Email address in the roster" in left

    # Another identifier: only the students who have it, never a blank one after a good row
    lms.remember(tmp_path, moodle_match="username")
    write_all(results, lab, tmp_path)
    text = (tmp_path / "moodle.csv").read_text()
    assert rows(text)[0][2] == "Username"
    assert all(r[2].strip() for r in rows(text)[1:])
    got = moodle_import(text, users, "Username", "username", "Kprobes lab", "Feedback for Kprobes lab")
    assert not got.aborted and {owner[uid] for _, uid, _, _ in got.grades} == {"alice", "bob"}
    left = (tmp_path / lms.LEFT_OUT_FILE).read_text()
    assert "frank: shares Username shared01 with gina" in left and "dave: no Username in the roster" in left
    lms.remember(tmp_path, moodle_match="idnumber")
    write_all(results, lab, tmp_path)
    text = (tmp_path / "moodle.csv").read_text()
    got = moodle_import(text, users, "ID number", "useridnumber", "Kprobes lab")
    assert not got.aborted and {owner[uid] for _, uid, _, _ in got.grades} == {"alice", "hank", "ann1", "ann2"}
    assert "kim: ID number 0 is blank to Moodle's importer" in (tmp_path / lms.LEFT_OUT_FILE).read_text()


def test_the_importer_models_show_the_misfiling_the_files_avoid():
    """The same models on files as they were written before: they credit or lose grades, so the tests above can fail."""
    users = [MoodleUser(id=1, email="alice@example.edu"), MoodleUser(id=2, email="bob@example.edu")]
    blank_after_good = "First name,Email address,Lab\nAlice,alice@example.edu,10\nBob,,3\n"
    got = moodle_import(blank_after_good, users, "Email address", "useremail", "Lab")
    assert [(uid, grade) for _, uid, grade, _ in got.grades] == [(1, 10.0), (1, 3.0)]     # bob's 3 went to alice
    unknown = "First name,Email address,Lab\nAlice,alice@example.edu,10\nZed,zed@example.edu,3\n"
    assert moodle_import(unknown, users, "Email address", "useremail", "Lab").aborted.startswith("usermappingerror")
    blank_first = "First name,Email address,Lab\nBob,,3\nAlice,alice@example.edu,10\n"
    assert "usermappingerrorusernotfound" in moodle_import(blank_first, users, "Email address", "useremail",
                                                           "Lab").aborted
    # Canvas: a blank cell removes a score; an email-only row is an unknown student; "Points Possible" is not one
    old = ("Student,ID,SIS User ID,SIS Login ID,Section,Lab\n    Points Possible,,,,,10\n"
           "carol,,,,,\nbob,,,,,7\n    Points Possible,,,,,11\n")
    cusers = [CanvasUser(id=13, name="carol", login_id="carol"), CanvasUser(id=14, name="Bob Jones")]
    got = canvas_import(old, cusers)
    assert canvas_changes(got, {(13, "Lab"): "8"}) == {(13, "Lab"): ("8", "")}
    assert got.rows[1].user is None and got.assignments[0].points_possible == "11"
    assert canvas_import("Name,Host,Section,Lab\n", cusers).error == "Invalid header row"


def test_one_number_format_across_gradebook_canvas_and_moodle(tmp_path):
    lab, results = cohort(tmp_path)
    number = re.compile(r"^(0|[1-9]\d*)(\.\d?[1-9])?$")
    book = {r["student"]: r for r in csv.DictReader(io.StringIO((tmp_path / "gradebook.csv").read_text()))}
    numeric = ("score", "max_score", "q1", "q2", "q3", "q4")
    cells = [c for r in book.values() for k, c in r.items() if k in numeric and c]
    assert cells and all(number.match(c) for c in cells), [c for c in cells if not number.match(c)]
    assert book["dave"]["score"] == "6.67" and book["dave"]["q3"] == "0.67" and book["alice"]["max_score"] == "13"
    for name, col in (("canvas.csv", -1), ("moodle.csv", 3)):
        table = rows((tmp_path / name).read_text())
        assert all(number.match(r[col]) for r in table[1:]), name
    moodle_scores = {r[2]: r[3] for r in rows((tmp_path / "moodle.csv").read_text())[1:]}
    assert moodle_scores["dave@example.edu"] == book["dave"]["score"]
    assert moodle_scores["alice@example.edu"] == book["alice"]["score"] == "13"


def test_points_are_scaled_to_the_lms_assignment_and_the_names_are_separate(tmp_path):
    lab, results = cohort(tmp_path, points="20", canvas_assignment="Kprobes (77)", moodle_assignment="Lab 3")
    table = rows((tmp_path / "canvas.csv").read_text())
    assert table[0][-1] == "Kprobes (77)" and table[1][-1] == "20"
    by_login = {r[3]: r[-1] for r in table[2:]}
    assert by_login["alice01"] == "20" and by_login["bob02"] == expected_cell(7, 13, 20) == "10.77"
    mtable = rows((tmp_path / "moodle.csv").read_text())
    assert mtable[0][3:] == ["Lab 3", "Feedback for Lab 3"]
    assert {r[2]: r[3] for r in mtable[1:]}["dave@example.edu"] == expected_cell(6.6667, 13, 20)
    lms.remember(tmp_path, points="150")
    write_all(results, lab, tmp_path)
    assert "Moodle refuses grades above 100" in (tmp_path / lms.LEFT_OUT_FILE).read_text()
    assert lms.points_problem("abc") and lms.points_problem("-3") and not lms.points_problem("20")
    assert lms.assignment_problem("Lab Final Grade", "canvas") and not lms.assignment_problem("Lab (12)", "canvas")


def test_canvas_and_moodle_headers_are_the_vendors(tmp_path):
    lab, _ = cohort(tmp_path)
    vendor = rows((FIXTURES / "canvas-gradebook-import.csv").read_text())
    ours = rows((tmp_path / "canvas.csv").read_text())
    assert ours[0][:5] == vendor[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert ours[1][0] == vendor[1][0] == "    Points Possible" and ours[1][1:5] == ["", "", "", ""]
    assert ours[2] == ["Liddell, Alice", "11", "S1", "alice01", "CS 326-01", "13"]
    assert "Points-Possible, Hank" in [r[0] for r in ours]
    mvendor = rows((FIXTURES / "moodle-grade-import.csv").read_text())
    assert rows((tmp_path / "moodle.csv").read_text())[0][:3] == ["First name", "Last name", "Email address"] \
        == mvendor[0][:3]
    assert lms.default_assignment(lab) == "bpfhol kprobes"
    assert lms.load(tmp_path / "nowhere")["students"] == {}


def test_canvas_export_columns_ride_along_and_an_export_roster_is_read_as_canvas_wrote_it(tmp_path):
    from grader.roster import load_roster

    export = tmp_path / "canvas-export.csv"
    export.write_text('Student,ID,SIS User ID,SIS Login ID,Integration ID,Root Account,Section,Quiz 1 (23),'
                      'Current Score,host,port\r\n'
                      '    Points Possible,,,,,,,10.00,(read only),,\r\n'
                      ',,,,,,,Manual Posting,,,\r\n'
                      '"Liddell, Alice",77,2012,alice01,I-1,uni.instructure.com,CS 326-01,8.00,80,10.0.0.1,22\r\n'
                      '"Student, Test",99,,,,,CS 326-01,,,,\r\n')
    notes = []
    entries = load_roster(export, warn=notes.append)
    assert [e.student for e in entries] == ["alice01"]
    assert entries[0].identity == {"name": "Liddell, Alice", "lms_id": "77", "sis_id": "2012", "login": "alice01",
                                   "integration_id": "I-1", "root_account": "uni.instructure.com",
                                   "section": "CS 326-01"}
    assert len(notes) == 1 and "Points Possible" in notes[0] and "Student, Test" in notes[0]
    lab = load_lab("kprobes")
    lms.remember(tmp_path, entries)
    text = canvas.render([result(lab, "alice01", 9)], lab, lms.load(tmp_path))
    table = rows(text)
    assert table[0][:7] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Integration ID", "Root Account",
                            "Section"]
    assert table[2][:7] == ["Liddell, Alice", "77", "2012", "alice01", "I-1", "uni.instructure.com", "CS 326-01"]
    got = canvas_import(text, [CanvasUser(id=77, name="Alice Liddell")])
    assert [(r.user.id, r.grades) for r in got.rows] == [(77, {"bpfhol kprobes": "9"})]
    mtable = rows(moodle.render([result(lab, "alice01", 9)], lab, lms.load(tmp_path)))
    assert [r[2:4] for r in mtable] == [["Username", "bpfhol kprobes"], ["alice01", "9"]]   # the field she has


def test_a_username_column_is_the_lms_login_not_the_ssh_account(tmp_path):
    from grader.roster import DEFAULT_USER, load_roster

    (tmp_path / "r.csv").write_text("student,host,Username,Email address,First name,Last name\n"
                                    "ann,10.0.0.1,ann.lee,ann@example.edu,Ann,Lee\n")
    [e] = load_roster(tmp_path / "r.csv")
    assert e.user == DEFAULT_USER and e.problem == ""
    assert e.identity == {"name": "Lee, Ann", "email": "ann@example.edu", "login": "ann.lee"}
    (tmp_path / "r.yml").write_text("students:\n- {student: bo, host: h, user: bpfhol-grader, username: bo7}\n")
    [b] = load_roster(tmp_path / "r.yml")
    assert (b.user, b.identity) == (DEFAULT_USER, {"login": "bo7"})


def test_a_not_gradable_students_results_json_is_gradescopes_failure_form():
    from grader.reports import gradescope

    lab = load_lab("kprobes")
    carol = result(lab, "carol", None)
    doc = gradescope.results_json(carol, lab)
    assert "score" not in doc and "tests" not in doc, doc            # neither: an autograder failure, not a 0
    assert doc["extra_data"]["bpfhol_status"] == "not_gradable" and "host unreachable" in doc["output"]
    graded = gradescope.results_json(result(lab, "alice", 13), lab)
    assert graded["score"] == lab.max_score and len(graded["tests"]) == len(lab.exercises)
