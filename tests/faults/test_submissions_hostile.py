"""Submissions mode (SUBMISSIONS/<student-id>/q*.bt graded on instructor VMs) with hostile folder
names and files: shell metacharacters, spaces, a leading dash, HTML, a newline; a symlink to a
secret, a FIFO, a sparse 4 GiB script.  One of the two lab VMs is down: its student goes back in
line and the live VM grades everyone."""

import os
import uuid

import pytest
import yaml

from faultkit import FAULT_LAB, REPO, graded_normally, job_bound, reference, run_grader, validate_results

pytestmark = pytest.mark.faults


def test_submissions_with_hostile_folders_and_a_dead_vm(tmp_path, farm, lab_prefix):
    vm = farm.add()
    tag = uuid.uuid4().hex[:8]
    ref = reference()
    subs = tmp_path / "SUBMISSIONS"
    names = {
        "meta": "x; touch pwned-%s" % tag,
        "subshell": "$(touch pwned2-%s)" % tag,
        "space": "a b",
        "dash": "-rf --no-preserve-root",
        "html": "<b onmouseover=alert(1)>bold<i>",
        "newline": "forged\nrow",                                    # a newline could forge a report line
    }
    for name in names.values():
        (subs / name).mkdir(parents=True)
        for fname, text in ref.items():
            (subs / name / fname).write_text(text)
    os.unlink(subs / names["space"] / "q1.bt")
    os.symlink("/etc/shadow", subs / names["space"] / "q1.bt")          # a secret of the grader's machine
    os.unlink(subs / names["dash"] / "q1.bt")
    os.mkfifo(subs / names["dash"] / "q1.bt")                          # would block a naive open()
    os.unlink(subs / names["subshell"] / "q1.bt")
    with open(subs / names["subshell"] / "q1.bt", "wb") as fh:
        fh.truncate(4 << 30)                                           # sparse 4 GiB
    (subs / ".hidden").mkdir()                                         # skipped: not a student
    vms = tmp_path / "vms.yml"
    vms.write_text(yaml.safe_dump({"students": [
        {"student": "vm-down", "host": "127.0.0.1", "port": 9, "user": "root", "key": vm.key,
         "agent": lab_prefix["agent"]},
        {"student": "vm-1", "host": "127.0.0.1", "port": vm.port, "user": "root", "key": vm.key,
         "agent": lab_prefix["agent"]},
    ]}))
    proc, wall = run_grader("submissions", subs, "--vms", vms, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                            "--connect-timeout", 2, timeout=job_bound() + 180)
    assert proc.returncode == 1, proc.stderr[-3000:]                   # 1: someone (the newline) not gradable
    # 5 students one after another on one VM + the dead VM's ~6 s: a FIFO or a 4 GiB file that blocked the
    # grader would wait out a job's bound (or the run's timeout)
    assert wall < job_bound(), wall
    recorded = dict(names, newline="forged\\x0arow")                 # a control character is shown escaped
    by = validate_results(tmp_path / "res", list(recorded.values()))
    assert not list(REPO.glob("pwned*")) and not list(tmp_path.glob("pwned*"))

    def ex(student, q):
        return {e["id"]: e for e in by[student]["exercises"]}[q]

    assert graded_normally(by[names["meta"]]) and graded_normally(by[names["html"]])
    assert by[recorded["newline"]]["status"] == "not_gradable"
    assert "control characters" in by[recorded["newline"]]["error"]
    assert ex(names["space"], "q1")["reason"] == "missing"            # the symlink was not followed
    assert ex(names["dash"], "q1")["reason"] == "missing"             # nor the FIFO opened
    assert ex(names["subshell"], "q1")["reason"] == "too_large"       # read up to the cap, no further
    for s in (names["space"], names["dash"], names["subshell"]):
        assert ex(s, "q2")["passed"] and ex(s, "q3")["passed"]
    journal = (tmp_path / "res" / "journal.jsonl").read_text()
    assert "root:" not in journal                                      # nothing of /etc/shadow travelled
    assert all(r["host"].endswith(":%d" % vm.port) for r in by.values() if r["status"] == "graded")
