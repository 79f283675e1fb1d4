"""Grader-side hygiene (issue 34 #6, #7 and "what a student sees"; issue 33 #1): one lab VM is never graded
twice as two students, the results folder is the instructor's alone whatever the umask, a key OpenSSH would
refuse is refused, results.json carries feedback and not raw output unless the instructor says so, and a
student none of whose scripts were found is "not gradable" with the fix, never 0."""

import json
import os
import random
import stat
from pathlib import Path

import pytest

from replay import HONEST, ReplayBackend
from grader import grading
from grader.backend.ssh import SSHBackend, key_mode_problem
from grader.cohort import _grade_with_retry, cohort_scripts
from grader.errors import GraderError, HostError
from grader.journal import Journal
from grader.labspec import load_lab
from grader.reports import gradescope, lms, write_all
from grader.roster import Entry, load_roster

LAB = load_lab("kprobes")


def private_key(path):
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
    path.chmod(0o600)
    return path


# -- one VM, two rows ------------------------------------------------------------------------------------
def test_two_rows_naming_one_vm_stop_the_run_naming_both(tmp_path):
    key = private_key(tmp_path / "k")
    (tmp_path / "r.yml").write_text(
        "students:\n"
        "  - {student: alice, host: 10.0.0.11, key: %s}\n"
        "  - {student: bob, host: 10.0.0.12, key: %s}\n"
        "  - {student: carol, host: 10.0.0.11, port: 22, key: %s}\n" % (key, key, key))
    with pytest.raises(GraderError) as err:
        load_roster(tmp_path / "r.yml")
    line = str(err.value)
    assert "\n" not in line
    assert "rows 1 (alice) and 3 (carol) both name 10.0.0.11:22" in line, line
    assert "bob" not in line


def test_a_vm_roster_naming_a_vm_twice_is_refused(tmp_path):
    """Submissions mode: rows are VMs (no answers folder); one VM named twice is two "VMs" that are one."""
    key = private_key(tmp_path / "k")
    (tmp_path / "vms.csv").write_text("student,host,port,key\nvm1,LAB.example,2222,%s\nvm2,lab.example,2222,%s\n"
                                      % (key, key))
    with pytest.raises(GraderError, match=r"rows 1 \(vm1\) and 2 \(vm2\) both name lab.example:2222"):
        load_roster(tmp_path / "vms.csv")


def test_a_shared_host_is_allowed_when_each_row_reads_its_own_answers(tmp_path):
    key = private_key(tmp_path / "k")
    (tmp_path / "r.yml").write_text(
        "students:\n"
        "  - {student: alice, host: 10.0.0.11, key: %s, student_user: alice}\n"
        "  - {student: bob, host: 10.0.0.11, key: %s, student_user: bob}\n"
        "  - {student: carol, host: 10.0.0.11, key: %s, answers: /srv/answers/carol}\n"
        "  - {student: dave, host: 10.0.0.11, key: %s, answers: /srv/answers/dave/}\n" % ((key,) * 4))
    assert [e.problem for e in load_roster(tmp_path / "r.yml")] == [""] * 4
    # the same folder twice, spelled with a trailing slash once: refused
    (tmp_path / "r.yml").write_text(
        "students:\n"
        "  - {student: carol, host: 10.0.0.11, key: %s, answers: /srv/answers/carol}\n"
        "  - {student: dave, host: 10.0.0.11, key: %s, answers: /srv/answers/carol/}\n" % (key, key))
    with pytest.raises(GraderError, match=r"same answers folder \(/srv/answers/carol\)"):
        load_roster(tmp_path / "r.yml")


def test_rows_that_are_not_gradable_anyway_do_not_count_as_a_second_vm(tmp_path):
    key = private_key(tmp_path / "k")
    (tmp_path / "r.yml").write_text(
        "students:\n"
        "  - {student: alice, host: 10.0.0.11, key: %s}\n"
        "  - {student: alice, host: 10.0.0.11, key: %s}\n"                 # duplicate id: not gradable
        "  - {student: eve, host: 10.0.0.11, key: %s}\n" % (key, key, tmp_path / "missing"))
    problems = [e.problem for e in load_roster(tmp_path / "r.yml")]
    assert problems[0] == "" and "duplicate student id" in problems[1] and "key file not found" in problems[2]


# -- keys OpenSSH would refuse ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_readable_by_group_or_others_is_refused_with_the_fix(tmp_path, mode):
    key = private_key(tmp_path / "id_lab")
    key.chmod(mode)
    problem = key_mode_problem(str(key))
    assert problem == ("key file %s is accessible by group or others (mode %04o), so OpenSSH refuses it: "
                       "run chmod 600 %s" % (key, mode, key))
    (tmp_path / "r.yml").write_text("students:\n  - {student: alice, host: 10.0.0.11, key: %s}\n" % key)
    [row] = load_roster(tmp_path / "r.yml")
    assert row.problem == problem                            # one row: that student's "not gradable"
    (tmp_path / "all.yml").write_text("students:\n" + "".join(
        "  - {student: s%d, host: 10.0.0.%d, key: %s}\n" % (i, i, key) for i in range(3)))
    with pytest.raises(GraderError, match="chmod 600 .*used by 3 rows"):   # the cohort's key: one line, exit 2
        load_roster(tmp_path / "all.yml")
    with pytest.raises(HostError, match="chmod 600") as err:                # and never used to log in
        SSHBackend("127.0.0.1", 9, key=str(key), tries=1, connect_timeout=1).connect()
    assert err.value.kind == "roster"
    key.chmod(0o600)
    assert key_mode_problem(str(key)) == "" and load_roster(tmp_path / "r.yml")[0].problem == ""
    key.chmod(0o400)
    assert key_mode_problem(str(key)) == ""


def test_a_path_with_a_space_is_quoted_in_the_fix(tmp_path):
    key = private_key(tmp_path / "my keys")
    key.chmod(0o644)
    assert key_mode_problem(str(key)).endswith("run chmod 600 '%s'" % key)


# -- the results folder is the instructor's ----------------------------------------------------------------
def _graded(student):
    scripts = {ex.id: ("upload", ex.script) for ex in LAB.exercises}
    result = grading.grade(ReplayBackend(HONEST), LAB, student, scripts, rng=random.Random(student))
    result.max_score = LAB.max_score
    return result


def _modes(root):
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_every_folder_is_0700_and_every_file_0600_whatever_the_umask(tmp_path, umask):
    results = tmp_path / "results" / "kprobes"
    old = os.umask(umask)
    try:
        journal = Journal(results)
        lms.remember(results, [Entry(student="ann", identity={"email": "ann@example.edu", "sis_id": "4711"})],
                     "bpfhol kprobes")
        journal.record(_graded("ann"), LAB)
        journal.record(grading.not_gradable("ben", "host unreachable"), LAB)
        write_all(list(journal.load().values()), LAB, results)
        journal.release()
    finally:
        os.umask(old)
    modes = _modes(results)
    assert {"journal.jsonl", "lms.json", "gradebook.csv", "canvas.csv", "moodle.csv", "junit.xml", "summary.txt",
            "index.html", ".grader.lock", "students/ann/results.json", "students/ann/index.html",
            "students/ben/results.json"} <= set(modes), sorted(modes)
    assert any(name.startswith("students/ann/evidence-") for name in modes)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (results / name).is_dir() else 0o600)}
    assert not wrong, wrong
    assert stat.S_IMODE(results.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "results").stat().st_mode) == 0o700     # made by the grader too


def test_an_older_graders_open_folder_is_closed_and_a_foreign_one_is_left_alone(tmp_path):
    old = tmp_path / "old"
    (old / "students" / "ann").mkdir(parents=True)
    (old / "journal.jsonl").write_text("")
    for path in (old, old / "journal.jsonl"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    journal = Journal(old)
    journal.record(grading.not_gradable("ann", "x"), LAB)
    journal.release()
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    assert stat.S_IMODE((old / "journal.jsonl").stat().st_mode) == 0o600
    shared = tmp_path / "shared"              # --results naming a folder that holds other things (/tmp, a home)
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "someone-elses-file").write_text("x")
    Journal(shared).release()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / "students").stat().st_mode) == 0o700


# -- what the student sees ---------------------------------------------------------------------------------
def test_results_json_shows_feedback_only_unless_the_instructor_chooses_output(tmp_path):
    result = _graded("ann")
    secret = "-----BEGIN OPENSSH PRIVATE KEY-----"
    result.exercises[0].output_excerpt = secret
    result.exercises[0].feedback = "right: kprobeme opens the file"
    default = gradescope.results_json(result, LAB)
    assert all("Your output began" not in t["output"] and secret not in t["output"] for t in default["tests"])
    assert default["tests"][0]["output"] == "right: kprobeme opens the file"
    chosen = gradescope.results_json(result, LAB, show_output=True)
    assert chosen["tests"][0]["output"].endswith("Your output began:\n" + secret)

    quiet, shown = Journal(tmp_path / "quiet"), Journal(tmp_path / "shown", show_output=True)
    for journal in (quiet, shown):
        journal.record(result, LAB)
        journal.release()
    student = json.loads((tmp_path / "quiet" / "students" / "ann" / "results.json").read_text())
    assert secret not in json.dumps(student)
    assert secret in (tmp_path / "shown" / "students" / "ann" / "results.json").read_text()
    # the instructor keeps everything: the journal (the excerpt) and the evidence (the whole raw output)
    assert secret in (tmp_path / "quiet" / "journal.jsonl").read_text()
    [evidence] = (tmp_path / "quiet" / "students" / "ann").glob("evidence-*.json")
    raw = json.loads(evidence.read_text())["reply"]["scripts"][0]["stdout"]
    assert raw and raw == result.evidence_doc["reply"]["scripts"][0]["stdout"]


# -- no silent zeros -------------------------------------------------------------------------------------
class FoundNothing(ReplayBackend):
    """The agent's reply when the answers folder (or the account) is not there: every script "missing"."""

    def __init__(self, missing):
        super().__init__(HONEST)
        self.missing, self.jobs = missing, 0

    def run_agent_job(self, job, uploads, timeout):
        self.jobs += 1
        reply = super().run_agent_job(job, uploads, timeout)
        specs = {s["name"]: s.get("path") or "/tmp/bpfhol-job/" + s.get("upload", "") for s in job["scripts"]}
        reply["scripts"] = [item if item["name"] not in self.missing else
                            {"name": item["name"], "status": "missing", "error": "no such file: %s" % specs[item["name"]]}
                            for item in reply["scripts"]]
        return reply

    def connect(self):
        pass

    def close(self):
        pass


def test_no_script_found_is_not_gradable_with_the_fix_never_zero():
    scripts = cohort_scripts(LAB, Entry(student="ann"))                       # ~vagrant/answers/kprobes
    backend = FoundNothing({ex.id for ex in LAB.exercises})
    with pytest.raises(HostError) as err:
        grading.grade(backend, LAB, "ann", scripts, rng=random.Random(1))
    assert err.value.kind == "no_scripts"
    assert str(err.value) == ("no scripts found in /home/vagrant/answers/kprobes (fix: the student saves q1.bt, "
                              "q2.bt, q3.bt, q4.bt there, or the roster names the folder that holds them with "
                              "answers: or student_user:; then rerun)")
    # as the cohort records it: not gradable at once (no retries: nothing a retry would change)
    result = _grade_with_retry(lambda: backend, LAB, "ann", scripts, {}, retries=2)
    assert result.status == "not_gradable" and result.error.startswith("no scripts found in /home/vagrant/")
    assert backend.jobs == 2 and gradescope.results_json(result, LAB).get("score") is None


def test_one_missing_script_stays_that_questions_fail():
    scripts = cohort_scripts(LAB, Entry(student="ann", answers="/srv/ann"))
    result = grading.grade(FoundNothing({"q2"}), LAB, "ann", scripts, rng=random.Random(1))
    by = {e.id: e for e in result.exercises}
    assert result.status == "graded" and not by["q2"].passed and by["q2"].reason == "missing"
    assert "q2.bt not found" in by["q2"].feedback
    assert by["q1"].passed and result.score == LAB.max_score - by["q2"].max_score


def test_a_submission_of_nothing_stays_a_graded_zero():
    """Submissions mode uploads what the student handed in: nothing handed in is their 0, each question saying
    which file was not found (the roster cannot be at fault)."""
    scripts = {ex.id: ("upload", ex.script) for ex in LAB.exercises}
    result = grading.grade(FoundNothing({ex.id for ex in LAB.exercises}), LAB, "ann", scripts,
                           rng=random.Random(1))
    assert result.status == "graded" and result.score == 0
    assert all(e.reason == "missing" for e in result.exercises)


def test_a_rejudge_of_an_all_missing_zero_makes_it_not_gradable():
    scripts = cohort_scripts(LAB, Entry(student="ann", student_user="alice"))
    backend = FoundNothing({ex.id for ex in LAB.exercises})
    job = grading.build_job(LAB, scripts, random.Random(1))
    raw = backend.run_agent_job(job, {}, 10)
    doc = {"student": "ann", "job": job, "reply": raw}
    with pytest.raises(HostError, match="no scripts found in /home/alice/answers/kprobes"):
        grading.rejudge(LAB, doc)
