"""A course variant on the real lab VM (issue 30 item 2): the session VM provisioned again with a course seed, as
a course's student edition does it (vagrant/course-seed, or BPFHOL_COURSE_SEED), gets the course's names in its
workloads, menu, text and self-check; the grader with the same --course-seed grades it.  The kprobes lab's public
reference answers fail there, and pass once rewritten in the course's names.

This file runs last of the session VM's (it changes the VM's names); pytest takes the files in name order."""

import base64
import json
import shutil
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
    # the published references, graded by the instructor's grader with the course's seed: nothing passes
    subs = tmp_path / "SUBMISSIONS"
    shutil.copytree(REPO / "labs" / "kprobes" / "solutions", subs / "published")
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "grader", "submissions", str(subs), "--vms", str(roster), "--lab",
                           "kprobes", "--course-seed", SEED, "--results", str(results), "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = [json.loads(l) for l in (results / "journal.jsonl").read_text().splitlines()]
    assert row["score"] == 0 and row["workload"]["opens"] >= 24, [(e["id"], e["reason"]) for e in row["exercises"]]
    # the same answers rewritten in the course's names, in the student's self-check on the VM (which judges with
    # the names the roles installed, variant.json): full marks (the grader's --course-seed passes them on loopback:
    # tests/integration/test_course_variants.py)
    rewritten = {p.name: variants.rename(p.read_text(), names)
                 for p in sorted((REPO / "labs" / "kprobes" / "solutions").glob("q*.bt"))}
    put = " && ".join("echo %s | base64 -d > ~/answers/kprobes/%s" % (
        base64.b64encode(text.encode()).decode(), name) for name, text in rewritten.items())
    assert lab_vm.run("mkdir -p ~/answers/kprobes && " + put, timeout=60).returncode == 0
    check = lab_vm.run("bpfhol check kprobes", timeout=300)
    assert check.returncode == 0 and "score: 13/13" in check.stdout, check.stdout + check.stderr
