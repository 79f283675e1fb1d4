"""A small cohort graded through the real CLI: real sshd hosts on loopback, real bpftrace
(tracepoints; this host has no kprobes), real workload and agent."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sshd_hosts import answers_folder as answers

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "tests" / "fixtures" / "labs" / "tracepoints" / "solutions"


def grader(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)




def reference():
    return {p.name: p.read_text() for p in SOLUTIONS.glob("q*.bt")}


@pytest.fixture
def cohort(tmp_path, farm, lab_prefix, test_lab):
    h1, h2 = farm.add(), farm.add()
    broken = reference()
    broken["q1.bt"] = "tracepoint:syscalls:sys_enter_openat { printf(\"%s\\n\", str(args->filename) }\n"
    del broken["q3.bt"]
    rows = [
        {"student": "alice", "host": "127.0.0.1", "port": h1.port, "user": "root", "key": h1.key,
         "agent": lab_prefix["agent"], "answers": answers(tmp_path, "alice", reference())},
        {"student": "bob", "host": "127.0.0.1", "port": h2.port, "user": "root", "key": h2.key,
         "agent": lab_prefix["agent"], "answers": answers(tmp_path, "bob", broken)},
        {"student": "carol", "host": "127.0.0.1", "port": 9, "user": "root", "key": h1.key,
         "agent": lab_prefix["agent"]},
    ]
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": rows}))
    return {"roster": roster, "results": tmp_path / "results", "lab": test_lab}


def test_cohort_graded_with_reports(cohort):
    # --parallel 1: the hosts share one kernel, so concurrent workloads would see each other.
    proc = grader("grade", str(cohort["roster"]), "--lab", cohort["lab"], "--results", str(cohort["results"]),
                  "--parallel", "1", "--connect-timeout", "3")
    assert proc.returncode == 1, proc.stderr  # carol is not gradable
    results = cohort["results"]
    journal = [json.loads(line) for line in (results / "journal.jsonl").read_text().splitlines()]
    by = {r["student"]: r for r in journal}
    assert set(by) == {"alice", "bob", "carol"}

    assert by["alice"]["status"] == "graded"
    assert by["alice"]["score"] == by["alice"]["max_score"] == 10, by["alice"]["exercises"]

    bob = {e["id"]: e for e in by["bob"]["exercises"]}
    assert bob["q1"]["reason"] == "compile_error" and "did not compile" in bob["q1"]["feedback"]
    assert bob["q2"]["passed"]
    assert bob["q3"]["reason"] == "missing" and "q3.bt" in bob["q3"]["feedback"]

    assert by["carol"]["status"] == "not_gradable"
    assert "unreachable" in by["carol"]["error"]
    failed = json.loads((results / "students" / "carol" / "results.json").read_text())
    assert "score" not in failed and "unreachable" in failed["output"]
    assert "carol" not in (results / "moodle.csv").read_text()

    gs = json.loads((results / "students" / "alice" / "results.json").read_text())
    assert gs["score"] == 10 and len(gs["tests"]) == 3
    assert {t["status"] for t in gs["tests"]} == {"passed"}
    assert {"name", "status", "score", "max_score", "output"} <= set(gs["tests"][0])

    rows = list(csv.DictReader((results / "gradebook.csv").open()))
    assert [r["student"] for r in rows] == ["alice", "bob", "carol"]
    assert rows[0]["score"] == "10"
    assert "<testsuites" in (results / "junit.xml").read_text()
    assert "alice" in (results / "index.html").read_text()
    assert "alice" in proc.stdout and "not gradable" in proc.stdout

    # A rerun resumes: nobody is graded twice.
    again = grader("grade", str(cohort["roster"]), "--lab", cohort["lab"], "--results", str(results),
                   "--parallel", "1", "--connect-timeout", "3", "--student", "alice", "--student", "bob")
    assert again.returncode == 0, again.stderr
    assert len((results / "journal.jsonl").read_text().splitlines()) == 3


def test_kprobes_lab_on_host_without_kprobes_reports_attach_failure(tmp_path, farm, lab_prefix):
    host = farm.add()
    kprobe_q1 = "kprobe:do_sys_openat2 /comm == \"kprobeme\"/ { printf(\"%s\\n\", str(uptr(arg1))); }\n"
    roster = tmp_path / "r.csv"
    roster.write_text("student,host,port,user,key,agent,answers\n"
                      "dave,127.0.0.1,%d,root,%s,%s,%s\n" % (host.port, host.key, lab_prefix["agent"],
                                                             answers(tmp_path, "dave", {"q1.bt": kprobe_q1})))
    proc = grader("grade", str(roster), "--lab", "kprobes", "--results", str(tmp_path / "res"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "res" / "journal.jsonl").read_text().splitlines()[0])
    q1 = result["exercises"][0]
    assert q1["reason"] == "attach_failed", q1
    assert "kprobe" in q1["feedback"]


def test_bad_roster_is_one_line_error(tmp_path):
    proc = grader("grade", str(tmp_path / "nope.yml"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "roster not found" in proc.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("students: [ {student: x\n")
    proc = grader("grade", str(bad))
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr and "Traceback" not in proc.stderr
    proc = grader("grade", str(bad), "--lab", "nosuchlab")
    assert proc.returncode == 2 and "unknown lab" in proc.stderr


def test_one_student_into_a_new_folder_lists_the_roster_and_a_keyless_row_logs_in_as_ssh_would(
        tmp_path, farm, lab_prefix, test_lab):
    """`grade --student alice` into a new results folder reported alice only; a row without `key` crashed in
    fabric (TypeError).  Now the roster is listed (bob "not graded yet"), and alice's keyless row logs in with
    the instructor's own ~/.ssh key, as `ssh` would."""
    import os

    host = farm.add()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copyfile(host.key, home / ".ssh" / "id_ed25519")
    os.chmod(home / ".ssh" / "id_ed25519", 0o600)
    rows = [{"student": "alice", "host": "127.0.0.1", "port": host.port, "user": "root",
             "agent": lab_prefix["agent"], "answers": answers(tmp_path, "alice", reference())},
            {"student": "bob", "host": "127.0.0.1", "port": 9, "user": "root", "agent": lab_prefix["agent"]}]
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": rows}))
    results = tmp_path / "new" / "results"
    env = dict(os.environ, HOME=str(home), SSH_AUTH_SOCK="")
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(roster), "--student", "alice", "--lab",
                           test_lab, "--results", str(results), "--connect-timeout", "3",
                           "--known-hosts", str(tmp_path / "kh")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr          # the exit code speaks for alice
    assert "alice    10/10" in proc.stdout, proc.stdout
    assert "bob" in proc.stdout and "not graded yet" in proc.stdout
    assert "2 students: 1 graded, 0 not gradable, 1 not graded yet" in (results / "summary.txt").read_text()
    with open(results / "gradebook.csv", newline="") as fh:
        status = {r["student"]: r["status"] for r in csv.DictReader(fh)}
    assert status == {"alice": "graded", "bob": "not_graded"}
    assert [json.loads(x)["student"] for x in (results / "journal.jsonl").read_text().splitlines()] == ["alice"]
