"""The grader against a real lab VM (vagrant up + playbooks/, kprobes really attach):
reference solutions pass with full score (13/13: q1-q4); wrong, cheating and broken scripts fail with the
right feedback; cohort mode reads the student's answers folder; the self-check works; the
grader account can run the agent and nothing else as root."""

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from expected_verdicts import EXPECTED, EXPECTED_UPROBES

pytestmark = [pytest.mark.vm, pytest.mark.timeout(4800)]  # the first test pays box build + vagrant up
REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "fixtures" / "scripts" / "kprobes"


def grader(*args, timeout=1200):
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def put_references(lab_vm, lab):
    """A lab's reference answers into the student's ~/answers/<lab>/ on the VM, as a student saves them."""
    for script in sorted((REPO / "labs" / lab / "solutions").glob("*.bt")):
        blob = base64.b64encode(script.read_bytes()).decode()
        r = lab_vm.run("mkdir -p ~/answers/%s && echo %s | base64 -d > ~/answers/%s/%s"
                       % (lab, blob, lab, script.name), timeout=60)
        assert r.returncode == 0, r.stderr


@pytest.fixture
def roster(lab_vm, tmp_path):
    path = tmp_path / "vm.yml"
    path.write_text(yaml.safe_dump([{"student": "vm", "host": lab_vm.host, "port": lab_vm.port,
                                     "user": "bpfhol-grader", "key": lab_vm.grader_key}]))
    return path


def test_preflight_sees_a_working_kprobe(roster, tmp_path):
    proc = grader("preflight", str(roster), "--known-hosts", str(tmp_path / "kh"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " yes " in proc.stdout and "ok" in proc.stdout.splitlines()[-1]


REFERENCE_RUNS = 2      # each randomized anew; the unit tests judge thousands of simulated runs
# Three of the five kprobes variant folders are judged from their real VM outputs, recorded on bpftrace 0.23 and
# 0.17 (tests/unit/test_recorded_outputs.py), not graded again here: each is a 30 s run on an emulated VM.
VARIANTS_NOT_ON_THE_VM = {"variants_b", "variants_c", "variants_d"}


def test_submissions_reference_variants_wrong_cheating_broken(roster, tmp_path):
    """On a real lab VM: the reference solutions pass in every run (REFERENCE_RUNS, each randomized anew), every
    correct variant passes, every cheat and broken script fails with the reason tests/expected_verdicts.py
    names.  Each student's evidence is kept, and `report --rejudge` re-judges the folder from it alone."""
    subs = tmp_path / "SUBMISSIONS"
    expected = {}
    for n in range(1, REFERENCE_RUNS + 1):
        shutil.copytree(REPO / "labs" / "kprobes" / "solutions", subs / ("reference_%d" % n))
        expected["reference_%d" % n] = EXPECTED["reference"]
    for case in EXPECTED:
        if case != "reference" and case not in VARIANTS_NOT_ON_THE_VM:
            shutil.copytree(CASES / case, subs / case)
            expected[case] = EXPECTED[case]
    results = tmp_path / "results"
    proc = grader("submissions", str(subs), "--vms", str(roster), "--results", str(results), "--quiet",
                  timeout=3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    journal = {json.loads(l)["student"]: json.loads(l) for l in (results / "journal.jsonl").read_text().splitlines()}
    assert set(journal) == set(expected)
    wrong = []
    for case, allowed_by_ex in expected.items():
        got = {e["id"]: e for e in journal[case]["exercises"]}
        for ex_id, allowed in allowed_by_ex.items():
            if got[ex_id]["reason"] not in allowed:
                wrong.append((case, ex_id, got[ex_id]["reason"], got[ex_id]["feedback"][:300],
                              got[ex_id]["output_excerpt"][:300]))
    assert not wrong, wrong
    for n in range(1, REFERENCE_RUNS + 1):
        assert journal["reference_%d" % n]["score"] == 13
        assert journal["reference_%d" % n]["workload"]["released"] is True
    assert "uptr" in {e["id"]: e for e in journal["empty_path"]["exercises"]}["q1"]["feedback"]
    assert "kprobe" in {e["id"]: e for e in journal["empty_path"]["exercises"]}["q2"]["feedback"]
    # the evidence behind every verdict, and a re-judge from it alone gives the same verdicts
    for row in journal.values():
        evidence = results / "students" / row["student"] / row["evidence"]
        doc = json.loads(evidence.read_text())
        assert doc["reply"]["workload"]["truth"] and doc["script_sha256"]
    again = grader("report", "--results", str(results), "--rejudge", timeout=300)
    assert again.returncode == 0 and "0 verdicts changed" in again.stderr, again.stderr


def test_cohort_mode_reads_the_answers_folder_and_self_check(lab_vm, roster, tmp_path):
    put_references(lab_vm, "kprobes")
    results = tmp_path / "results"
    proc = grader("grade", str(roster), "--results", str(results), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = [json.loads(l) for l in (results / "journal.jsonl").read_text().splitlines()]
    assert row["score"] == 13, row["exercises"]
    assert row["facts"]["bpftrace"]

    check = lab_vm.run("bpfhol check kprobes", timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "score: 13/13" in check.stdout


def test_grader_account_may_run_the_agent_and_nothing_else(lab_vm):
    base = ["ssh", "-i", lab_vm.grader_key, "-p", str(lab_vm.port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
            "bpfhol-grader@%s" % lab_vm.host]
    ok = subprocess.run(base + ["sudo -n /opt/bpfhol/sbin/bpfhol-agent version"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and '"agent_version"' in ok.stdout, ok.stderr
    denied = subprocess.run(base + ["sudo -n id"], capture_output=True, text=True, timeout=120)
    assert denied.returncode != 0


def test_counters_beside_a_slow_script_see_every_open_and_close(roster, tmp_path):
    """The start barrier on a real VM: counters at the syscall entry points (the probe that missed the first
    opens before the barrier existed) count exactly the workload's opens and closes, while another script
    of the same student attaches a hundred probes slowly."""
    from grader import bpftrace_output
    from simulate import read_truth

    folder = tmp_path / "SUBMISSIONS" / "barrier"
    folder.mkdir(parents=True)
    (folder / "q1.bt").write_text('kprobe:__*_sys_openat /comm == "kprobeme"/ { @opens = count(); }\n'
                                  'kprobe:__*_sys_close /comm == "kprobeme"/ { @closes = count(); }\n')
    (folder / "q2.bt").write_text('kprobe:vfs_* /comm == "kprobeme"/ { @[probe] = count(); }\n')
    (folder / "q3.bt").write_text('kretprobe:do_sys_openat2 /comm == "kprobeme"/ { @returns = count(); }\n')
    results = tmp_path / "results"
    proc = grader("submissions", str(folder.parent), "--vms", str(roster), "--results", str(results), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = json.loads((results / "journal.jsonl").read_text().splitlines()[-1])
    doc = json.loads((results / "students" / "barrier" / row["evidence"]).read_text())
    truth = read_truth(doc["reply"]["workload"]["truth"])
    by_name = {s["name"]: s for s in doc["reply"]["scripts"]}
    q1, q2, q3 = by_name["q1"], by_name["q2"], by_name["q3"]
    assert q1["attached"] and q2["attached"] and q3["attached"], (q1["stderr"], q2["stderr"], q3["stderr"])
    counters = bpftrace_output.parse(q1["stdout"]).maps
    assert counters.get("@opens") == len(truth.opens) and counters.get("@closes") == len(truth.closes), counters
    assert bpftrace_output.parse(q3["stdout"]).maps.get("@returns") == len(truth.opens)
    # the slow script (dozens of kprobes: detaching takes as long as attaching) still ended cleanly and
    # printed its map: its grace grows with its attach time
    slow = bpftrace_output.parse(q2["stdout"]).maps.get("@") or {}
    assert q2["signals"] == ["SIGINT"] and slow.get("kprobe:vfs_open") == len(truth.opens), (q2["signals"], slow)
    assert truth.opened_fds[0] == 4 + int(doc["job"]["workload"]["args"].get("spare-fds", 0))


def test_uprobes_lab_references_full_marks_on_the_vm(lab_vm, roster, tmp_path):
    """The second lab on the same VM (the roles install every lab of bpfhol_labs): its reference answers, read
    from the student's answers folder, get full marks against the VM's own uprobeme."""
    put_references(lab_vm, "uprobes")
    results = tmp_path / "results"
    proc = grader("grade", str(roster), "--lab", "uprobes", "--results", str(results), "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = [json.loads(l) for l in (results / "journal.jsonl").read_text().splitlines()]
    assert row["score"] == row["max_score"] == 13, [(e["id"], e["reason"], e["feedback"]) for e in row["exercises"]]
    # the student's own self-check on the VM loads the lab's checks from the lab folder the roles installed
    check = lab_vm.run("bpfhol check uprobes", timeout=300)
    assert check.returncode == 0 and "score: 13/13" in check.stdout, check.stdout + check.stderr


def test_uprobes_lab_wrong_cheating_and_variants_on_the_vm(roster, tmp_path):
    """The uprobes lab's fixture cases (tests/fixtures/scripts/uprobes/, shared with the loopback test) in
    submissions mode against the VM's uprobeme: each case gets the reasons tests/expected_verdicts.py names, and
    a re-judge from the evidence alone changes nothing."""
    subs = tmp_path / "SUBMISSIONS"
    for case in EXPECTED_UPROBES:
        source = REPO / "labs" / "uprobes" / "solutions" if case == "reference" else CASES.parent / "uprobes" / case
        shutil.copytree(source, subs / case)
    results = tmp_path / "results"
    proc = grader("submissions", str(subs), "--vms", str(roster), "--lab", "uprobes", "--results", str(results),
                  "--quiet", timeout=3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    journal = {json.loads(l)["student"]: json.loads(l) for l in (results / "journal.jsonl").read_text().splitlines()}
    assert set(journal) == set(EXPECTED_UPROBES)
    wrong = [(case, e["id"], e["reason"], e["feedback"][:300], e["output_excerpt"][:300])
             for case, allowed in EXPECTED_UPROBES.items() for e in journal[case]["exercises"]
             if e["reason"] not in allowed[e["id"]]]
    assert not wrong, wrong
    assert journal["reference"]["score"] == journal["variants"]["score"] == 13
    again = grader("report", "--results", str(results), "--rejudge", timeout=300)
    assert again.returncode == 0 and "0 verdicts changed" in again.stderr, again.stderr


def test_uprobes_examples_of_the_text_run_in_the_vm(lab_vm):
    """The uprobes text's examples as a student runs them: `bpfhol start uprobes`, then sudo bpftrace on each
    (installed in the lab folder by the roles); each ends itself and prints what its section says.  The loopback
    test runs them on this host's kernel; this runs them on the lab's, with the VM's bpftrace."""
    start = lab_vm.run("bpfhol stop >/dev/null; bpfhol start uprobes", timeout=180)
    assert start.returncode == 0 and "uprobeme: running (pid" in start.stdout, start.stdout + start.stderr
    expect = {"01": "parse_field(\"", "02": ") returned ", "03": "@job_ns", "04": "nanosleep+0"}
    try:
        for script in sorted((REPO / "labs" / "uprobes" / "examples").glob("*.bt")):
            r = lab_vm.run("sudo timeout -k 5 170 bpftrace /opt/bpfhol/labs/uprobes/examples/%s" % script.name,
                           timeout=200)
            assert r.returncode == 0, (script.name, r.stderr[-2000:])
            assert expect[script.name[:2]] in r.stdout, (script.name, r.stdout[-2000:])
            if script.name.startswith("04"):       # frames of uprobeme's own are named, not hex
                assert "main+" in r.stdout or "fetch_quote+" in r.stdout, r.stdout[-2000:]
    finally:
        stop = lab_vm.run("bpfhol stop", timeout=180)
    assert stop.returncode == 0, stop.stdout + stop.stderr


def test_no_script_of_the_student_edition_passes_a_question(roster, tmp_path, lab_name="kprobes"):
    """Every kprobes script students receive (the student edition: the text's examples, nothing else), with its
    `interval ... exit()` removed as a student handing it in would, graded for real on the VM: its output, judged
    from the evidence by every question's check (a script may be handed in for any question), passes none.  The
    uprobes lab's examples get the same on this host's kernel (tests/integration/test_uprobes_lab_loopback.py::
    test_no_example_of_the_text_passes_any_question)."""
    from grader.labspec import load_lab
    from student_edition import build_edition, edition_scripts, examples_as_submissions, questions_passed

    lab = load_lab(lab_name)
    edition = build_edition(tmp_path / "edition")
    scripts = edition_scripts(edition, lab_name)
    assert scripts and all("/examples/" in name for name in scripts), sorted(scripts)
    where = examples_as_submissions(scripts, lab, tmp_path / "SUBMISSIONS", REPO / "labs" / lab_name / "solutions")
    results = tmp_path / "results"
    proc = grader("submissions", str(tmp_path / "SUBMISSIONS"), "--vms", str(roster), "--lab", lab_name,
                  "--results", str(results), "--quiet", timeout=3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    journal = [json.loads(l) for l in (results / "journal.jsonl").read_text().splitlines()]
    passing, ran = [], 0
    for row in journal:
        doc = json.loads((results / "students" / row["student"] / row["evidence"]).read_text())
        ran += sum(1 for item in doc["reply"]["scripts"] if item.get("status") != "missing")
        passing += [(where[(row["student"], slot)], question, reason)
                    for slot, question, reason in questions_passed(lab, doc)]
    controls = {name.split(":")[1] for name in where.values() if name.startswith("reference:")}
    assert ran == len(scripts) + len(controls)
    assert controls and controls == {question for name, question, _ in passing if name == "reference:" + question}
    leaks = [p for p in passing if not p[0].startswith("reference:")]
    assert not leaks, "scripts students receive pass questions: %s" % leaks


def test_pool_mode_collects_from_a_student_host_and_grades_on_the_lab_vm(lab_vm, roster, tmp_path, farm, lab_prefix):
    """grade --pool (issue 30): the student's machine only hands over the scripts; the lab VM grades them.  The
    student's host here is a loopback sshd whose agent is forged to run the references whatever a job names (what a
    student root on their VM can do); their own scripts are the wrong ones, and one was changed after the deadline."""
    import os
    import time

    from sshd_hosts import forged_agent_running_references

    references = tmp_path / "refs"
    shutil.copytree(REPO / "labs" / "kprobes" / "solutions", references)
    student_host = farm.add()
    answers = tmp_path / "answers"
    shutil.copytree(CASES / "wrong", answers)
    deadline = time.time() - 600
    for script in answers.glob("q*.bt"):
        os.utime(script, (deadline - 60, deadline - 60))
    os.utime(answers / "q2.bt", (deadline + 60, deadline + 60))
    students = tmp_path / "students.yml"
    students.write_text(yaml.safe_dump([{
        "student": "mallory", "host": "127.0.0.1", "port": student_host.port, "user": "root", "key": student_host.key,
        "agent": forged_agent_running_references(tmp_path / "forged", lab_prefix["agent"], references),
        "answers": str(answers)}]))
    results = tmp_path / "results"
    proc = grader("grade", str(students), "--pool", str(roster), "--results", str(results), "--deadline",
                  time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(deadline)), timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = [json.loads(l) for l in (results / "journal.jsonl").read_text().splitlines()]
    assert row["mode"] == "pool" and row["host"].endswith(":%d" % lab_vm.port), row["host"]
    reasons = {e["id"]: e["reason"] for e in row["exercises"]}
    assert all(reasons[q] in allowed for q, allowed in EXPECTED["wrong"].items()), reasons
    assert row["score"] == 0 and list(row["submitted"]["late"]) == ["q2"]
    assert {e["id"]: e for e in row["exercises"]}["q2"]["feedback"].startswith("late: q2.bt was changed at")
