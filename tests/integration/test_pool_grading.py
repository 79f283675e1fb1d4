"""Grades that count (`grade --pool`): each student's scripts collected from their own VM, graded on the
instructor's VM.  Real sshd on loopback, the real agent, real uprobeme and bpftrace (the uprobes lab: this host's
kernel has uprobes).

The attack: a student who is root on their VM replaces its agent with a wrapper that runs the reference answers
whatever the job names (issue 30 measured a 30-line one at 13/13).  In self-check mode (`grade` without --pool)
that wrapper gets full marks for wrong scripts, which is why that mode says it is a self-check; with --pool the
student's VM only hands over the scripts, and the wrong scripts get what they earn."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sshd_hosts import answers_folder, forged_agent_running_references

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "labs" / "uprobes"
CASES = REPO / "tests" / "fixtures" / "scripts" / "uprobes"


@pytest.fixture(scope="module")
def quick_lab(tmp_path_factory):
    """The uprobes lab with a 4 s window (its own: 12 s), by path: these tests are about collecting, modes and
    deadlines, and each of their seven grading jobs waits out the window (the lab's own window is graded in
    tests/integration and tests/vm); the references still score 13 in it (asserted below)."""
    import shutil

    dest = tmp_path_factory.mktemp("quick-lab") / "uprobes"
    shutil.copytree(LAB, dest, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((dest / "lab.yaml").read_text())
    spec["window_seconds"] = 4
    (dest / "lab.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(dest)


def for_host(folder, prefix):
    return {p.name: p.read_text().replace("/opt/bpfhol/", str(prefix) + "/") for p in sorted(folder.glob("u*.bt"))}


def grade(*args, lab="uprobes", timeout=900):
    return subprocess.run([sys.executable, "-m", "grader", "grade", *map(str, args), "--lab", str(lab), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def journal(results):
    return {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}


def test_pool_grades_collected_scripts_and_a_forged_agent_changes_nothing(tmp_path, farm, lab_prefix, quick_lab):
    prefix = lab_prefix["root"]
    references = Path(answers_folder(tmp_path, "references", for_host(LAB / "solutions", prefix)))
    forged = forged_agent_running_references(tmp_path / "forged-agent", lab_prefix["agent"], references)
    student_vm, pool_vm = farm.add(), farm.add()
    mallory = answers_folder(tmp_path, "mallory", for_host(CASES / "wrong", prefix))
    row = {"student": "mallory", "host": "127.0.0.1", "port": student_vm.port, "user": "root",
           "key": student_vm.key, "agent": forged, "answers": mallory}
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": [row]}))
    pool = tmp_path / "pool.yml"
    pool.write_text(yaml.safe_dump({"students": [{"student": "labvm1", "host": "127.0.0.1", "port": pool_vm.port,
                                                  "user": "root", "key": pool_vm.key,
                                                  "agent": lab_prefix["agent"]}]}))

    # self-check mode runs on the student's VM: the forged agent's full marks, and the mode says what it is
    own = subprocess.run([sys.executable, "-m", "grader", "grade", str(roster), "--lab", quick_lab, "--results",
                          str(tmp_path / "own")], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert own.returncode == 0, own.stderr
    assert "1 of them graded on their own VM, where they are root: a self-check" in own.stdout
    mine = journal(tmp_path / "own")["mallory"]
    assert mine["score"] == 13 and mine["mode"] == "self-check"

    # grades that count: collected from the student's VM, graded on the pool
    results = tmp_path / "pool-results"
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(roster), "--pool", str(pool), "--lab",
                           quick_lab, "--results", str(results)], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "collect mallory: collected" in proc.stderr and "self-check" not in proc.stdout
    got = journal(results)["mallory"]
    assert got["mode"] == "pool" and got["host"].endswith(":%d" % pool_vm.port), got["host"]
    assert got["score"] == 0, [(e["id"], e["reason"]) for e in got["exercises"]]
    manifest = json.loads((results / "collected" / "mallory" / "manifest.json").read_text())
    assert manifest["host"].endswith(":%d" % student_vm.port)
    for name, text in for_host(CASES / "wrong", prefix).items():
        assert (results / "collected" / "mallory" / name).read_text() == text
        assert manifest["files"][name]["status"] == "ok" and len(manifest["files"][name]["sha256"]) == 64
    assert got["submitted"]["sha256"]["u1"] == manifest["files"]["u1.bt"]["sha256"]
    assert oct((results / "collected").stat().st_mode & 0o777) == "0o700"


def test_deadline_flags_or_refuses_late_scripts_and_a_collection_is_kept(tmp_path, farm, lab_prefix, quick_lab):
    prefix = lab_prefix["root"]
    student_vm, pool_vm = farm.add(), farm.add()
    ana = Path(answers_folder(tmp_path, "ana", for_host(LAB / "solutions", prefix)))
    ben = Path(answers_folder(tmp_path, "ben", for_host(LAB / "solutions", prefix)))
    deadline = time.time() - 3600
    for folder in (ana, ben):
        for script in folder.glob("u*.bt"):
            os.utime(script, (deadline - 60, deadline - 60))
    os.utime(ana / "u2.bt", (deadline + 600, deadline + 600))        # ana changed u2 after the deadline
    os.utime(ben / "u2.bt", (deadline + 600, deadline + 600))        # so did ben, who has an extension
    rows = [{"student": s, "host": "127.0.0.1", "port": student_vm.port, "user": "root", "key": student_vm.key,
             "agent": lab_prefix["agent"], "answers": str(f)} for s, f in (("ana", ana), ("ben", ben))]
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": rows}))
    pool = tmp_path / "pool.yml"
    pool.write_text(yaml.safe_dump([{"student": "labvm1", "host": "127.0.0.1", "port": pool_vm.port,
                                     "user": "root", "key": pool_vm.key, "agent": lab_prefix["agent"]}]))
    extensions = tmp_path / "extensions.csv"
    extensions.write_text("student,deadline\nben,%s\n" % time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                                                        time.localtime(deadline + 7200)))
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(deadline))
    results = tmp_path / "results"
    proc = grade(roster, "--pool", pool, "--deadline", when, "--extensions", extensions, "--late", "refuse",
                 "--results", results, lab=quick_lab)
    assert proc.returncode == 0, proc.stderr
    rows = journal(results)
    ana_ex = {e["id"]: e for e in rows["ana"]["exercises"]}
    assert ana_ex["u2"]["reason"] == "late" and "after the deadline" in ana_ex["u2"]["feedback"]
    assert rows["ana"]["score"] == 13 - ana_ex["u2"]["max_score"] and list(rows["ana"]["submitted"]["late"]) == ["u2"]
    assert rows["ben"]["score"] == 13 and rows["ben"]["submitted"]["late"] == {}

    # the scripts as collected are what count: a change on the VM after collection is not seen by a rerun
    (ana / "u1.bt").write_text("BEGIN { printf(\"changed after the collection\\n\"); }\n")
    again = grade(roster, "--pool", pool, "--results", results, "--force", "--student", "ana", lab=quick_lab)
    assert again.returncode == 0, again.stderr
    assert journal(results)["ana"]["exercises"][0]["reason"] == "ok"
    # --recollect takes the VM's scripts anew (and regrades): the changed u1 now fails
    fresh = grade(roster, "--pool", pool, "--results", results, "--recollect", "--student", "ana", lab=quick_lab)
    assert fresh.returncode == 0, fresh.stderr
    assert {e["id"]: e["reason"] for e in journal(results)["ana"]["exercises"]}["u1"] != "ok"


@pytest.mark.parametrize("args, says", [
    (["--recollect"], "--recollect goes with --pool"),      # --deadline works without --pool too (issue 33)
    (["--deadline", "next friday"], "is not a time: write it as 2026-12-14T23:59"),
    (["--deadline", "2026-12-14T23:59", "--late-penalty", "10%/week"], "write it as PERCENT%/day"),
    (["--late-penalty", "10%/day"], "--late-penalty goes with --deadline"),
    (["--pool", "POOL", "--deadline", "next friday"], "is not a time: write it as 2026-12-14T23:59"),
    (["--pool", "POOL", "--extensions", "EXT"], "--extensions goes with --deadline"),
])
def test_pool_options_refused_in_one_line(tmp_path, args, says):
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump([{"student": "a", "host": "127.0.0.1", "port": 9, "user": "root"}]))
    pool = tmp_path / "pool.yml"
    pool.write_text(roster.read_text())
    ext = tmp_path / "ext.csv"
    ext.write_text("student,deadline\na,2026-12-15T00:00\n")
    args = [str(pool) if a == "POOL" else str(ext) if a == "EXT" else a for a in args]
    proc = grade(roster, *args, "--results", tmp_path / "r")
    assert proc.returncode == 2 and says in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_a_student_with_no_scripts_is_not_gradable_with_the_fix(tmp_path, farm, lab_prefix, quick_lab):
    """No silent zeros in pool mode either: an answers folder with none of the scripts (a roster's wrong folder or
    account, far more often than a student's choice) is "not gradable: no scripts found in ..."; once the scripts
    are there, a plain rerun collects them again and grades."""
    student_vm, pool_vm = farm.add(), farm.add()
    empty = Path(answers_folder(tmp_path, "zoe", {}))
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump([{"student": "zoe", "host": "127.0.0.1", "port": student_vm.port,
                                       "user": "root", "key": student_vm.key, "agent": lab_prefix["agent"],
                                       "answers": str(empty)}]))
    pool = tmp_path / "pool.yml"
    pool.write_text(yaml.safe_dump([{"student": "labvm1", "host": "127.0.0.1", "port": pool_vm.port,
                                     "user": "root", "key": pool_vm.key, "agent": lab_prefix["agent"]}]))
    results = tmp_path / "results"
    proc = grade(roster, "--pool", pool, "--results", results, lab=quick_lab)
    assert proc.returncode == 1, proc.stderr
    zoe = journal(results)["zoe"]
    assert zoe["status"] == "not_gradable" and zoe["error"].startswith("no scripts found in %s" % empty), zoe
    for name, text in for_host(LAB / "solutions", lab_prefix["root"]).items():
        (empty / name).write_text(text)
    again = grade(roster, "--pool", pool, "--results", results, lab=quick_lab)
    assert again.returncode == 0, again.stderr
    zoe = journal(results)["zoe"]
    assert zoe["score"] == 13, [(e["id"], e["reason"], e["feedback"][:200]) for e in zoe["exercises"]]
