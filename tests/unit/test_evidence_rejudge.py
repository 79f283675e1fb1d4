"""Evidence behind every verdict, and re-judging a results folder from it alone (no VM)."""

import json
import random
import subprocess
import sys
from pathlib import Path

from replay import HONEST, ReplayBackend
from simulate import printf
from grader import grading
from grader.journal import Journal
from grader.labspec import load_lab

REPO = Path(__file__).resolve().parents[2]




def test_evidence_is_kept_and_a_fixed_check_regrades_from_it(tmp_path):
    lab = load_lab("kprobes")
    journal = Journal(tmp_path)
    scripts = {ex.id: ("upload", ex.script) for ex in lab.exercises}
    for student in ("ann", "ben"):
        result = grading.grade(ReplayBackend(HONEST), lab, student, scripts, rng=random.Random(student))
        result.max_score = lab.max_score
        journal.record(result, lab)
    rows = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rows] == [13, 13]
    doc = json.loads((tmp_path / "students" / "ann" / rows[0]["evidence"]).read_text())
    assert doc["grader_version"] and doc["job"]["workload"]["args"]["count"] >= 24
    assert set(doc["script_sha256"]) == {"q1", "q2", "q3", "q4"} and doc["reply"]["workload"]["truth"]
    journal.release()                   # the `report` runs below need the results folder

    def report(*extra):
        return subprocess.run([sys.executable, "-m", "grader", "report", "--results", str(tmp_path), *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=120)

    same = report("--rejudge")
    assert same.returncode == 0 and "re-judged 2 students from their evidence: 0 verdicts changed" in same.stderr

    # An instructor finds ben's recorded q3 output was a constant: the evidence says so, the re-judge agrees.
    path = tmp_path / "students" / "ben" / rows[1]["evidence"]
    doc = json.loads(path.read_text())
    doc["reply"]["scripts"][2]["stdout"] = printf("opens 12 closes 10")
    path.write_text(json.dumps(doc))
    changed = report("--rejudge")
    assert changed.returncode == 0 and "1 verdicts changed" in changed.stderr, changed.stderr
    last = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert last["student"] == "ben" and last["score"] == 9 and last["evidence"] == rows[1]["evidence"]
    assert "ben" in (tmp_path / "gradebook.csv").read_text()


def _graded_folder(tmp_path, lab, students=("ann", "ben")):
    """A results folder as `grade` leaves it: journal rows and evidence for honest students."""
    results = tmp_path / "results"
    journal = Journal(results)
    scripts = {ex.id: ("upload", ex.script) for ex in lab.exercises}
    for student in students:
        backend = ReplayBackend(HONEST, source="%s:x {}" % lab.require_probe_types[0])
        result = grading.grade(backend, lab, student, scripts, rng=random.Random(student))
        result.max_score = lab.max_score
        journal.record(result, lab)
    journal.release()
    return results


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "grader", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def _tree(folder):
    """Every file's size and mtime, but the lock file (who holds the folder, rewritten by each run)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".grader.lock"}


def test_a_folder_of_another_lab_is_never_rejudged_against_the_default(tmp_path):
    """The bug: `report --rejudge` without --lab judged a tracepoints cohort by kprobes (10/10 became 0/13)."""
    import shutil

    lab_dir = tmp_path / "labs" / "tracepoints"
    shutil.copytree(REPO / "tests" / "fixtures" / "labs" / "tracepoints", lab_dir)
    results = _graded_folder(tmp_path, load_lab(str(lab_dir)))
    rows = [json.loads(line) for line in (results / "journal.jsonl").read_text().splitlines()]
    assert {r["lab"] for r in rows} == {"tracepoints"} and [r["score"] for r in rows] == [10, 10]

    plain = _cli("report", "--results", results, "--rejudge")      # judged by the lab its evidence names
    assert plain.returncode == 0 and "0 verdicts changed" in plain.stderr, plain.stderr
    assert [json.loads(x)["score"] for x in (results / "journal.jsonl").read_text().splitlines()] == [10, 10]
    assert "10/10" in (results / "summary.txt").read_text()
    before = _tree(results)

    wrong = _cli("report", "--results", results, "--rejudge", "--lab", "kprobes")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong.stderr
    # a lab graded from a folder is named by its folder: '--lab tracepoints' would be an unknown lab (issue 33)
    assert "graded with lab 'tracepoints', not 'kprobes': omit --lab or pass --lab %s " % lab_dir in wrong.stderr

    # grading the kprobes lab into this folder is refused before any host is contacted
    roster = tmp_path / "r.yml"
    roster.write_text("students:\n- {student: cy, host: 192.0.2.1, port: 22, user: u, key: %s}\n" % roster)
    mixed = _cli("grade", roster, "--results", results, "--lab", "kprobes", "--connect-timeout", 1)
    assert mixed.returncode == 2 and "pass --lab %s " % lab_dir in mixed.stderr, mixed.stderr
    assert "omit --lab" not in mixed.stderr

    shutil.rmtree(lab_dir)             # the lab folder is gone: named, never replaced by the default lab
    lost = _cli("report", "--results", results, "--rejudge")
    assert lost.returncode == 2 and lost.stderr.count("\n") == 1, lost.stderr
    assert "graded with lab 'tracepoints', which this grader cannot find: pass --lab PATH" in lost.stderr
    assert _tree(results) == before, "a refused re-judge or grade wrote something"


def test_an_older_folder_without_lab_fields_is_read_by_its_evidence(tmp_path):
    """Rows written before the lab was recorded: the evidence's job still names it."""
    results = _graded_folder(tmp_path, load_lab(str(REPO / "tests" / "fixtures" / "labs" / "tracepoints")),
                             students=("ann",))
    journal_file = results / "journal.jsonl"
    row = json.loads(journal_file.read_text())
    row.pop("lab")
    journal_file.write_text(json.dumps(row) + "\n")
    evidence_file = results / "students" / "ann" / row["evidence"]
    doc = json.loads(evidence_file.read_text())
    doc.pop("lab")
    evidence_file.write_text(json.dumps(doc))
    wrong = _cli("report", "--results", results, "--rejudge", "--lab", "kprobes")
    assert wrong.returncode == 2 and "graded with lab 'tracepoints'" in wrong.stderr


def test_a_points_change_is_listed_by_dry_run_then_applied_keeping_the_old_verdict(tmp_path):
    """The bug: a points change in lab.yaml was not carried by a re-judge ('0 verdicts changed')."""
    import shutil

    lab_copy = tmp_path / "lab" / "kprobes"
    shutil.copytree(REPO / "labs" / "kprobes", lab_copy)
    results = _graded_folder(tmp_path, load_lab(str(lab_copy)))
    spec = lab_copy / "lab.yaml"
    text = spec.read_text()
    at = text.index("  - id: q4")
    assert "points: 3" in text[at:]
    spec.write_text(text[:at] + text[at:].replace("points: 3", "points: 5", 1))
    before = _tree(results)

    dry = _cli("report", "--results", results, "--rejudge", "--dry-run", "--lab", lab_copy)
    assert dry.returncode == 0, dry.stderr
    assert "2 verdicts changed" in dry.stderr and "dry run" in dry.stderr
    lines = [line.split() for line in dry.stdout.splitlines()]
    assert ["ann", "q4", "PASS", "3/3", "PASS", "5/5", "points", "3", "->", "5"] in lines, dry.stdout
    assert ["ben", "q4", "PASS", "3/3", "PASS", "5/5", "points", "3", "->", "5"] in lines
    assert _tree(results) == before, "--dry-run wrote something"

    applied = _cli("report", "--results", results, "--rejudge", "--lab", lab_copy)
    assert applied.returncode == 0 and "2 verdicts changed" in applied.stderr
    assert "points 3 -> 5" in applied.stdout
    rows = [json.loads(line) for line in (results / "journal.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    for new in rows[2:]:
        assert new["score"] == new["max_score"] == 15
        previous = new["rejudged"]["previous"]
        assert previous["score"] == previous["max_score"] == 13
        assert [e["max_score"] for e in previous["exercises"]] == [3, 3, 4, 3]
    assert "15" in (results / "gradebook.csv").read_text()

    # The evidence names the folder the lab came from: without --lab it is that copy, not the installed lab.
    again = _cli("report", "--results", results, "--rejudge")
    assert again.returncode == 0 and "0 verdicts changed" in again.stderr and "changes:" not in again.stdout
    # The installed lab of that name is a choice the instructor makes, and its changes are listed.
    back = _cli("report", "--results", results, "--rejudge", "--dry-run", "--lab", "kprobes")
    assert back.returncode == 0 and "points 5 -> 3" in back.stdout and "2 verdicts changed" in back.stderr


def test_a_verdict_change_names_the_reason_it_changed(tmp_path):
    results = _graded_folder(tmp_path, load_lab("kprobes"), students=("ben",))
    row = json.loads((results / "journal.jsonl").read_text())
    path = results / "students" / "ben" / row["evidence"]
    doc = json.loads(path.read_text())
    doc["reply"]["scripts"][2]["stdout"] = printf("opens 12 closes 10")
    path.write_text(json.dumps(doc))
    out = _cli("report", "--results", results, "--rejudge")
    assert out.returncode == 0, out.stderr
    head, changes = out.stdout.split("\n", 1)[0], out.stdout.split("\n")[1:3]
    assert head == "changes:" and changes[0].split() == ["student", "exercise", "was", "now", "why"], out.stdout
    line = changes[1]
    fields = line.split()
    assert fields[:5] == ["ben", "q3", "PASS", "4/4", "FAIL"] and "ok ->" in line, out.stdout
    stray = _cli("report", "--results", results, "--dry-run")
    assert stray.returncode == 2 and "--dry-run goes with --rejudge" in stray.stderr


def test_evidence_names_the_checks_code_and_a_rejudge_says_when_it_changed(tmp_path):
    """A verdict is traced to the code that gave it: evidence records the sha256 of the lab's checks module
    (a file or a package); a re-judge by changed checks says so, even when no verdict changed."""
    import shutil

    lab_dir = tmp_path / "labs" / "kprobes"
    shutil.copytree(REPO / "labs" / "kprobes", lab_dir, ignore=shutil.ignore_patterns("__pycache__"))
    results = _graded_folder(tmp_path, load_lab(str(lab_dir)), students=("ann",))
    row = json.loads((results / "journal.jsonl").read_text())
    doc = json.loads((results / "students" / "ann" / row["evidence"]).read_text())
    assert len(doc["lab"]["checks_sha256"]) == 64 and doc["lab"]["checks_sha256"] != doc["lab"]["spec_sha256"]
    assert doc["lab"]["checks_sha256"] == load_lab("kprobes").identity()["checks_sha256"]   # the same code
    uprobes = load_lab("uprobes").identity()["checks_sha256"]                               # a one-file module
    assert len(uprobes) == 64 and uprobes != doc["lab"]["checks_sha256"]
    same = _cli("report", "--results", results, "--rejudge")
    assert same.returncode == 0 and "the lab changed" not in same.stderr, same.stderr
    with open(lab_dir / "checks" / "files.py", "a") as f:
        f.write("\n# a comment is a change of code too\n")
    changed = _cli("report", "--results", results, "--rejudge", "--dry-run")
    assert changed.returncode == 0 and "0 verdicts changed" in changed.stderr, changed.stderr
    assert "since the first judgement the lab changed: its checks' code for 1 student (%s)" % lab_dir in changed.stderr
