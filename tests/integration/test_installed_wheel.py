"""The grader as an instructor installs it: a wheel built from the checkout, installed into a fresh venv, run from
a folder outside the checkout.  The labs come with it (package data), and it grades a small cohort over real sshd
hosts with real bpftrace.  Also: `python -m grader` without its packages says what to run, in one line.

Offline by design: the venv gets the grader's dependencies from the test's own environment (a .pth line) instead
of PyPI; `pip check` proves the wheel's declared requirements are met by them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "tests" / "fixtures" / "labs" / "tracepoints" / "solutions"


def run(cmd, cwd, timeout=300, env=None):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_installed_grader_without_dependencies_says_what_to_run(installed, tmp_path):
    roster = tmp_path / "r.yml"
    roster.write_text("students:\n- {student: a, host: 127.0.0.1}\n")
    for cmd in ([installed["python"], "-m", "grader", "preflight", roster], [installed["bin"] / "bpfhol-grade", "labs"]):
        proc = run(cmd, cwd=installed["outside"])
        assert proc.returncode == 2, (cmd, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
    proc = run([installed["python"], "-m", "grader", "preflight", roster], cwd=installed["outside"])
    assert proc.stderr.count("\n") == 1 and "is missing" in proc.stderr and "pip install" in proc.stderr


def test_a_checkout_without_dependencies_points_at_its_venv_or_pip(tmp_path):
    bare = tmp_path / "bare"
    assert run([sys.executable, "-m", "venv", "--without-pip", bare], cwd=tmp_path).returncode == 0
    proc = run([bare / "bin" / "python", "-m", "grader", "grade", "cohort.yml"], cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "is missing" in proc.stderr
    assert ".venv/bin/python -m grader" in proc.stderr or "pip install" in proc.stderr
    assert "not gradable" not in proc.stdout                             # nothing was graded (or recorded)


def test_installed_grader_lists_its_labs_and_grades_a_cohort(installed_with_deps, tmp_path, farm, lab_prefix,
                                                             test_lab):
    # The dependencies, from this test's environment (offline); the grader itself only from the wheel.
    installed = installed_with_deps
    env = installed["env"]
    outside = installed["outside"]
    check = run([installed["python"], "-m", "pip", "check"], cwd=outside, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    where = run([installed["python"], "-c", "import grader; print(grader.__file__)"], cwd=outside, env=env)
    assert where.stdout.startswith(str(installed["site"])), where.stdout    # not the checkout's grader/

    grade = installed["bin"] / "bpfhol-grade"
    labs = run([grade, "labs"], cwd=outside, env=env)
    every_lab = sorted(p.parent.name for p in (REPO / "labs").glob("*/lab.yaml"))     # every lab folder ships
    assert {"kprobes", "uprobes"} <= set(every_lab)
    assert labs.returncode == 0 and labs.stdout.split() == every_lab, labs.stdout + labs.stderr
    lab_dir = installed["site"] / "grader" / "labs" / "kprobes"
    for part in ("lab.yaml", "README.md", "solutions/q1.bt", "workload/kprobeme.c", "workload/Makefile",
                 "checks/__init__.py", "checks/run.py", "checks/descriptors.py"):
        assert (lab_dir / part).is_file(), part
    # Each lab travels with its own checks module, and loads from the installed package.
    for part in ("lab.yaml", "checks.py", "README.md", "solutions/u4.bt", "workload/uprobeme.c"):
        assert (installed["site"] / "grader" / "labs" / "uprobes" / part).is_file(), part
    loads = run([installed["python"], "-c", "from grader.labspec import load_lab; "
                 "[print(lab.path, sorted(lab.checks)) for lab in map(load_lab, ('uprobes', 'kprobes'))]"],
                cwd=outside, env=env)
    assert loads.returncode == 0 and str(installed["site"]) in loads.stdout and "caller_counts" in loads.stdout, \
        loads.stdout + loads.stderr
    assert "'leak_sites'" in loads.stdout.splitlines()[1] and "leak_sites" not in loads.stdout.splitlines()[0]

    h1, h2 = farm.add(), farm.add()
    answers = {}
    for name, scripts in [("alice", {p.name: p.read_text() for p in SOLUTIONS.glob("q*.bt")}),
                          ("bob", {"q2.bt": (SOLUTIONS / "q2.bt").read_text()})]:
        folder = tmp_path / "answers" / name
        folder.mkdir(parents=True)
        for fname, text in scripts.items():
            (folder / fname).write_text(text)
        answers[name] = str(folder)
    roster = outside / "cohort.yml"
    roster.write_text(yaml.safe_dump({"students": [
        {"student": "alice", "host": "127.0.0.1", "port": h1.port, "user": "root", "key": h1.key,
         "agent": lab_prefix["agent"], "answers": answers["alice"], "email": "alice@example.edu"},
        {"student": "bob", "host": "127.0.0.1", "port": h2.port, "user": "root", "key": h2.key,
         "agent": lab_prefix["agent"], "answers": answers["bob"], "email": "bob@example.edu"}]}))
    proc = run([grade, "grade", "cohort.yml", "--lab", test_lab, "--parallel", "1", "--connect-timeout", "3"],
               cwd=outside, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = outside / "results" / "tracepoints"
    by = {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}
    # (q3 prints its map when bpftrace exits, which a very loaded host can cut short: not what is tested here)
    alice = {e["id"]: e for e in by["alice"]["exercises"]}
    assert by["alice"]["status"] == "graded" and alice["q1"]["passed"] and alice["q2"]["passed"], alice
    bob = {e["id"]: e for e in by["bob"]["exercises"]}
    assert bob["q1"]["reason"] == bob["q3"]["reason"] == "missing" and bob["q2"]["passed"], bob
    for report in ("summary.txt", "gradebook.csv", "canvas.csv", "moodle.csv", "junit.xml", "index.html",
                   "students/alice/results.json"):
        assert (results / report).is_file(), report
    assert "alice@example.edu" in (results / "moodle.csv").read_text()

    # --lab kprobes resolves from the package data too (the host here cannot attach kprobes: nothing to grade)
    down = outside / "down.yml"
    down.write_text(yaml.safe_dump([{"student": "zed", "host": "127.0.0.1", "port": 9, "key": h1.key}]))
    proc = run([grade, "grade", "down.yml", "--lab", "kprobes", "--connect-timeout", "2", "--quiet"], cwd=outside,
               env=env, timeout=300)
    assert proc.returncode == 1 and "unknown lab" not in proc.stderr, proc.stderr
    assert (outside / "results" / "kprobes" / "journal.jsonl").is_file()
    # not gradable: no Moodle row (a re-import must not clear a hand-entered grade), Gradescope's failure form
    assert "zed" not in (outside / "results" / "kprobes" / "moodle.csv").read_text()
    failed = json.loads((outside / "results" / "kprobes" / "students" / "zed" / "results.json").read_text())
    assert "score" not in failed and "not gradable" in failed["output"]

    # The instructor's workflow, as installed: dashboard pages, a re-judge that names its lab, strict rosters,
    # one student into a new folder.
    assert "alice" in (results / "students" / "alice" / "index.html").read_text()
    assert "Content-Security-Policy" in (results / "index.html").read_text()
    dry = run([grade, "report", "--results", "results/tracepoints", "--rejudge", "--dry-run"], cwd=outside, env=env)
    assert dry.returncode == 0 and "re-judged 2 students from their evidence: 0 verdicts changed" in dry.stderr, \
        dry.stdout + dry.stderr
    wrong = run([grade, "report", "--results", "results/tracepoints", "--rejudge", "--lab", "kprobes"], cwd=outside,
                env=env)
    assert wrong.returncode == 2 and "graded with lab 'tracepoints', not 'kprobes'" in wrong.stderr, wrong.stderr
    typo = outside / "typo.yml"
    typo.write_text("students:\n- {student: ann, host: 127.0.0.1, prot: %d, key: %s}\n" % (h1.port, h1.key))
    proc = run([grade, "grade", "typo.yml", "--lab", test_lab, "--results", "typo-results"], cwd=outside, env=env)
    assert proc.returncode == 2 and "unknown field 'prot' (did you mean 'port'?" in proc.stderr, proc.stderr
    assert not (outside / "typo-results" / "journal.jsonl").exists()
    proc = run([grade, "grade", "cohort.yml", "--lab", test_lab, "--student", "bob", "--results", "bob-only",
                "--connect-timeout", "3"], cwd=outside, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alice" in proc.stdout and "not graded yet" in proc.stdout
    assert "2 students: 1 graded, 0 not gradable, 1 not graded yet" in (outside / "bob-only" / "summary.txt").read_text()
