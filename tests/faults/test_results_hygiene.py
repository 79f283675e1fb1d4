"""Through the CLI, as an instructor meets them: the results folder is theirs alone whatever the umask (issue 34
#7: evidence, lms.json with emails and SIS ids were world-readable under umask 022), a student none of whose
scripts are there is "not gradable" with the fix and never 0/10 (issue 33 #1: a forgotten `answers:` gave the
whole cohort zeros, exit 0), and results.json, which the student sees, shows feedback and not raw output."""

import csv
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from faultkit import FAULT_LAB, answers, reference, row, run_grader, write_roster

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]


def grader_with_umask(umask, *args):
    return subprocess.run([sys.executable, "-m", "grader", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, preexec_fn=lambda: os.umask(umask))


def loose_modes(root):
    """Everything under root that is not 0700 (folders) or 0600 (files)."""
    wrong = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode != (0o700 if path.is_dir() else 0o600):
                wrong[str(path.relative_to(root))] = oct(mode)
    return wrong


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_results_folder_is_private_whatever_the_umask(tmp_path, umask):
    roster = tmp_path / "r.yml"            # rows decided before any connection: nothing to wait for
    roster.write_text("students:\n"
                      "  - {student: ann, email: ann@example.edu, sis_id: '4711'}\n"
                      "  - {student: ben, host: 127.0.0.1, key: %s, email: ben@example.edu}\n"
                      % (tmp_path / "missing-key"))
    results = tmp_path / "results" / "kprobes"
    proc = grader_with_umask(umask, "grade", roster, "--lab", "kprobes", "--results", results)
    assert proc.returncode == 1, proc.stderr
    assert {"journal.jsonl", "lms.json", "gradebook.csv", "canvas.csv", "moodle.csv", "index.html"} <= set(
        os.listdir(results))
    assert (results / "students" / "ann" / "results.json").is_file()
    assert stat.S_IMODE(results.stat().st_mode) == 0o700
    assert not loose_modes(results), loose_modes(results)
    proc = grader_with_umask(umask, "report", "--results", results)       # a later report keeps it so
    assert proc.returncode == 1 and not loose_modes(results), (proc.stderr, loose_modes(results))


def test_no_scripts_found_is_not_gradable_and_one_missing_script_is_that_questions_fail(tmp_path, farm, lab_prefix):
    host = farm.add()
    agent = lab_prefix["agent"]
    only_q1 = answers(tmp_path, "only-q1", {"q1.bt": reference()["q1.bt"]})
    nowhere = str(tmp_path / "no-such-answers-folder")
    roster = write_roster(tmp_path / "r.yml", [row("nofolder", host, agent, nowhere),
                                               row("onlyq1", host, agent, only_q1)])
    results = tmp_path / "res"
    proc, _ = run_grader("grade", roster, "--lab", FAULT_LAB, "--results", results, "--parallel", 1)
    assert proc.returncode == 1, proc.stderr[-2000:]                 # someone not gradable: never exit 0
    by = {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}
    nofolder = by["nofolder"]
    assert nofolder["status"] == "not_gradable" and not nofolder["exercises"], nofolder
    assert nofolder["error"].startswith("no scripts found in %s (fix: " % nowhere), nofolder["error"]
    assert "answers:" in nofolder["error"]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("nofolder"))
    assert line.split()[1] == "-" and "not gradable: no scripts found in" in line, line     # no score at all
    gradebook = {r["student"]: r for r in csv.DictReader(open(results / "gradebook.csv", encoding="utf-8"))}
    assert gradebook["nofolder"]["status"] == "not_gradable" and gradebook["nofolder"]["score"] == ""
    assert gradebook["onlyq1"]["score"] not in ("", "0", "0.0")

    onlyq1 = by["onlyq1"]
    assert onlyq1["status"] == "graded", onlyq1
    ex = {e["id"]: e for e in onlyq1["exercises"]}
    assert ex["q1"]["passed"], ex["q1"]
    assert all(not ex[q]["passed"] and ex[q]["reason"] == "missing" and "not found" in ex[q]["feedback"]
               for q in ("q2", "q3")), ex
    # what the student sees: feedback, not the script's raw output; the evidence keeps the output
    student = json.loads((results / "students" / "onlyq1" / "results.json").read_text())
    assert student["tests"] and all("Your output began" not in t["output"] for t in student["tests"]), student
    evidence = json.loads((results / "students" / "onlyq1" / onlyq1["evidence"]).read_text())
    q1 = next(i for i in evidence["reply"]["scripts"] if i["name"] == "q1")
    assert q1["stdout"].strip() and ex["q1"]["output_excerpt"]

