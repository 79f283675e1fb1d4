"""A course variant on the real lab VM (issue 30 item 2): the session VM provisioned again with a course seed, as
a course's student edition does it (vagrant/course-seed, or BPFHOL_COURSE_SEED), gets the course's names in its
workloads, menu, text and self-check; the grader with the same --course-seed grades it.  The kprobes lab's public
reference answers fail there, and pass once rewritten in the course's names.

This file runs last of the session VM's (it changes the VM's names); pytest takes the files in name order."""

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grader import variants

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]
REPO = Path(__file__).resolve().parents[2]
SEED = "cs326-vm-course"


def test_a_course_seed_renames_the_lab_and_the_grader_grades_it(lab_vm, tmp_path):
    names = variants.draw("kprobes", variants.load_spec(REPO / "labs" / "kprobes"), SEED)
    program = names["kprobeme"]
    lab_vm.env["BPFHOL_COURSE_SEED"] = SEED
    out = lab_vm.provision()
    assert lab_vm.recap(out).get("failed", 0) == 0
    seen = lab_vm.run("bpfhol list; cat /opt/bpfhol/labs/kprobes/variant.json; grep -c '%s' ~/lab/kprobes.md;"
                      " grep -wc kprobeme ~/lab/kprobes.md; test -x /opt/bpfhol/bin/%s && echo built"
                      % (program, program), timeout=120)
    lines = seen.stdout.splitlines()
    assert "workload %s:" % program in seen.stdout, seen.stdout + seen.stderr
    assert json.loads(seen.stdout[seen.stdout.index("{"):seen.stdout.index("}") + 1]) == names
    assert "built" in lines and int(lines[-3]) > 10, seen.stdout        # the text says the course's program
    # kprobeme stays only where the text names its source file (workload/kprobeme.c)
    text = lab_vm.run("cat ~/lab/kprobes.md", timeout=60).stdout
    assert all(".c" in line for line in text.splitlines() if " kprobeme" in line or "kprobeme " in line), [
        line for line in text.splitlines() if "kprobeme" in line and ".c" not in line][:3]

    roster = tmp_path / "vm.yml"
    roster.write_text(yaml.safe_dump([{"student": "vm", "host": lab_vm.host, "port": lab_vm.port,
                                       "user": "bpfhol-grader", "key": lab_vm.grader_key}]))
    subs = tmp_path / "SUBMISSIONS"
    for case, rename in (("published", False), ("rewritten", True)):
        (subs / case).mkdir(parents=True)
        for script in sorted((REPO / "labs" / "kprobes" / "solutions").glob("q*.bt")):
            text = script.read_text()
            (subs / case / script.name).write_text(variants.rename(text, names) if rename else text)
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "grader", "submissions", str(subs), "--vms", str(roster), "--lab",
                           "kprobes", "--course-seed", SEED, "--results", str(results), "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {json.loads(l)["student"]: json.loads(l) for l in (results / "journal.jsonl").read_text().splitlines()}
    assert rows["published"]["score"] == 0, [(e["id"], e["reason"]) for e in rows["published"]["exercises"]]
    assert rows["rewritten"]["score"] == 13, [(e["id"], e["reason"], e["feedback"][:200])
                                             for e in rows["rewritten"]["exercises"]]
    # the student's own self-check on the VM judges with the installed names (variant.json)
    put = " && ".join("echo %s | base64 -d > ~/answers/kprobes/%s" % (
        base64.b64encode((subs / "rewritten" / name).read_bytes()).decode(), name) for name in
        ("q1.bt", "q2.bt", "q3.bt", "q4.bt"))
    assert lab_vm.run("mkdir -p ~/answers/kprobes && " + put, timeout=60).returncode == 0
    check = lab_vm.run("bpfhol check kprobes", timeout=300)
    assert check.returncode == 0 and "score: 13/13" in check.stdout, check.stdout + check.stderr
