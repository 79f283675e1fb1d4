"""Issue 33's roster problems, through the installed wheel outside the checkout, over loopback sshd with real
bpftrace: no silent zeros (a row whose answers folder holds none of the scripts, a row with no key on a machine
with no SSH agent or ~/.ssh/id_*: each not gradable with its fix, never a 0, never "unreachable"), a run where most
students have no scripts stops before any report, and `preflight --lab uprobes` proves a uprobe (a host with
uprobes but no kprobes is fit for that lab).  About 20 s."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "tests" / "fixtures" / "labs" / "tracepoints" / "solutions"


def run(cmd, cwd, env, timeout=300):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_roster_mistakes_are_not_gradable_with_the_fix_through_the_wheel(installed_with_deps, tmp_path, farm,
                                                                          lab_prefix, test_lab):
    where = installed_with_deps
    outside, grade = where["outside"], where["bin"] / "bpfhol-grade"
    env = dict(where["env"], HOME=str(tmp_path / "home"))           # no ~/.ssh/id_*, and no agent:
    env.pop("SSH_AUTH_SOCK", None)
    host = farm.add()
    good = tmp_path / "answers" / "alice"
    good.mkdir(parents=True)
    for script in SOLUTIONS.glob("q*.bt"):
        (good / script.name).write_text(script.read_text())

    def row(student, answers, **extra):
        return dict({"student": student, "host": "127.0.0.1", "port": host.port, "user": "root", "key": host.key,
                     "agent": lab_prefix["agent"], "answers": str(answers)}, **extra)

    keyless = {k: v for k, v in row("bob", tmp_path / "answers" / "bob").items() if k != "key"}
    rows = [row("alice", good), keyless, row("carol", tmp_path / "answers" / "nowhere")]
    (outside / "cohort.yml").write_text(yaml.safe_dump({"students": rows}))
    proc = run([grade, "grade", "cohort.yml", "--lab", test_lab, "--parallel", "1", "--connect-timeout", "3",
                "--retries", "1", "--quiet"], cwd=outside, env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = outside / "results" / "tracepoints"
    by = {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}
    assert by["alice"]["status"] == "graded"
    assert by["bob"]["status"] == "not_gradable" and "no key to log in" in by["bob"]["error"], by["bob"]
    assert "unreachable" not in by["bob"]["error"] and "add key: PATH" in by["bob"]["error"]
    assert by["carol"]["status"] == "not_gradable" and by["carol"]["error"].startswith("no scripts found in")
    assert "score" not in json.loads((results / "students" / "carol" / "results.json").read_text())

    # most of a run without scripts: one line, exit 2, no report
    (outside / "wrong.yml").write_text(yaml.safe_dump([row(s, tmp_path / "answers" / ("missing-" + s))
                                                        for s in ("dan", "eve", "fay")]))
    stop = run([grade, "grade", "wrong.yml", "--lab", test_lab, "--results", "wrong", "--parallel", "1", "--quiet"],
               cwd=outside, env=env, timeout=600)
    [error] = [line for line in stop.stderr.splitlines() if "error:" in line]          # after the progress lines
    assert stop.returncode == 2 and error.startswith("bpfhol-grade: error: 3 of 3 students have no scripts"), \
        stop.stderr
    assert "answers: or student_user:" in error and "Traceback" not in stop.stderr
    kept = [json.loads(line)["student"] for line in (outside / "wrong" / "journal.jsonl").read_text().splitlines()]
    assert sorted(kept) == ["dan", "eve", "fay"] and not (outside / "wrong" / "gradebook.csv").exists()

    # preflight proves the lab's own probe kind: this kernel has uprobes (and no kprobes)
    (outside / "vms.yml").write_text(yaml.safe_dump([row("vm1", good)]))
    fit = run([grade, "preflight", "vms.yml", "--lab", "uprobes"], cwd=outside, env=env)
    assert fit.returncode == 0 and "uprobe yes" in fit.stdout, fit.stdout + fit.stderr
