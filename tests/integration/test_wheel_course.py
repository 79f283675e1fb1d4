"""A course through the installed wheel, outside the checkout (issue 33 items 3 and 5): one small cohort graded with
a deadline and a late penalty on loopback sshd hosts with real bpftrace, then what instructors do afterwards with no
VM: re-judge with changed points (a later plain report must agree: the 11/10 bug), refusals that name what works,
an override file, a report beside a running grade, and the Gradescope bundle's script keeping its evidence where
the instructor says so that it can be re-judged."""

import csv
import io
import json
import os
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "tests" / "fixtures" / "labs" / "tracepoints" / "solutions"
DAY = 86400


def run(cmd, cwd, env, timeout=300):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def iso(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def last_rows(results):
    return {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}


def test_a_course_from_grade_to_overrides_through_the_wheel(installed_with_deps, tmp_path, farm, lab_prefix, test_lab):
    where = installed_with_deps
    env, outside = dict(where["env"], BPFHOL_KNOWN_HOSTS=str(tmp_path / "known_hosts")), where["outside"]
    grade = where["bin"] / "bpfhol-grade"
    lab = outside / "lab-first"                      # the instructor's own copy of a lab: known only by its path
    shutil.copytree(test_lab, lab)
    deadline = int(time.time()) - 3 * DAY
    hosts, rows = [farm.add(), farm.add()], []
    for host, (name, scripts) in zip(hosts, [("alice", ["q1.bt", "q2.bt", "q3.bt"]), ("bob", ["q1.bt", "q2.bt"])]):
        folder = tmp_path / "answers" / name
        folder.mkdir(parents=True)
        for script in scripts:
            (folder / script).write_text((SOLUTIONS / script).read_text())
            os.utime(folder / script, (deadline - 3600,) * 2)
        rows.append({"student": name, "host": "127.0.0.1", "port": host.port, "user": "root", "key": host.key,
                     "agent": lab_prefix["agent"], "answers": str(folder), "lms_id": str(100 + len(rows))})
    os.utime(tmp_path / "answers" / "bob" / "q2.bt", (deadline + DAY + 3600,) * 2)     # 2 started days late: -20%
    os.utime(tmp_path / "answers" / "alice" / "q3.bt", (deadline + 3600,) * 2)       # late, but within her extension
    (outside / "cohort.yml").write_text(yaml.safe_dump({"students": rows}))
    (outside / "extensions.csv").write_text("student,deadline\nalice,%s\n" % iso(deadline + DAY))

    # grade, with a deadline, an extension for alice and a late penalty (times from each student's agent)
    graded = run([grade, "grade", "cohort.yml", "--lab", lab, "--results", "course", "--parallel", "2",
                  "--connect-timeout", "3", "--quiet", "--deadline", iso(deadline), "--extensions", "extensions.csv",
                  "--late-penalty", "10%/day"],
                 cwd=outside, env=env, timeout=600)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    results = outside / "course"
    by = last_rows(results)
    bob = {e["id"]: e for e in by["bob"]["exercises"]}
    assert bob["q2"]["passed"] and bob["q2"]["score"] == 2.4, bob["q2"]
    assert bob["q2"]["feedback"].startswith("late penalty: -0.6 points (10%/day x 2 days late")
    assert by["bob"]["submitted"]["penalty"]["points"] == {"q2": 0.6}
    alice = {e["id"]: e for e in by["alice"]["exercises"]}
    assert alice["q1"]["passed"] and alice["q2"]["passed"] and "late" not in json.dumps(alice)
    alice_score = by["alice"]["score"]

    # re-judge with changed points (q1 3 -> 4), then a plain report: the re-judge's lab, never 11/10
    changed = outside / "lab-changed"
    shutil.copytree(lab, changed)
    spec = changed / "lab.yaml"
    text = spec.read_text()
    at = text.index("  - id: q1")
    spec.write_text(text[:at] + text[at:].replace("points: 3", "points: 4", 1))
    rejudged = run([grade, "report", "--results", "course", "--rejudge", "--lab", changed, "--quiet"], outside, env)
    assert rejudged.returncode == 0 and "2 verdicts changed" in rejudged.stderr, rejudged.stdout + rejudged.stderr
    by = last_rows(results)
    assert by["alice"]["score"] == alice_score + 1 and by["bob"]["score"] == 4 + 2.4        # the penalty stays
    report = run([grade, "report", "--results", "course"], outside, env)
    assert report.returncode == 0, report.stderr
    assert "%g/11" % (alice_score + 1) in report.stdout, report.stdout
    summary = (results / "summary.txt").read_text()
    assert "%g/11" % (alice_score + 1) in summary and "/10 " not in summary, summary
    canvas = list(csv.reader(io.StringIO((results / "canvas.csv").read_text())))
    assert canvas[1][0].strip() == "Points Possible" and canvas[1][-1] == "11", canvas

    # refusals name what works: the copy is unknown by its name 'tracepoints'
    wrong = run([grade, "report", "--results", "course", "--lab", "kprobes"], outside, env)
    assert wrong.returncode == 2 and "pass --lab %s " % changed in wrong.stderr, wrong.stderr
    mixed = run([grade, "report", "--results", "course", "--lab", lab], outside, env)
    assert mixed.returncode == 2 and "points differ" in mixed.stderr, mixed.stderr
    assert run([grade, "report", "--results", "course", "--lab", changed, "--quiet"], outside, env).returncode == 0

    # an override file: recorded in the journal, honoured by every report and LMS file, marked for the student
    (outside / "overrides.csv").write_text("student,question,points,reason\n"
                                           "bob,q2,3,extension granted after the fact\n")
    taken = run([grade, "report", "--results", "course", "--overrides", "overrides.csv", "--quiet"], outside, env)
    assert taken.returncode == 0 and "1 students' results changed" in taken.stderr, taken.stderr
    by = last_rows(results)
    assert by["bob"]["score"] == 7 and by["bob"]["overrides"][0]["judged"] == 2.4
    canvas = {r[1]: r[-1] for r in csv.reader(io.StringIO((results / "canvas.csv").read_text()))}
    assert float(canvas["101"]) == 7, canvas
    seen = json.loads((results / "students" / "bob" / "results.json").read_text())
    assert seen["score"] == 7 and "Instructor override: 3 of 3 points" in json.dumps(seen)

    # a plain report beside a running grade: a snapshot of the journal, written apart, the lock untouched
    holder = subprocess.Popen([where["python"], "-c", "import sys, time\nfrom grader.journal import Journal\n"
                               "Journal(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(60)\n", "course"],
                              cwd=outside, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        side = run([grade, "report", "--results", "course", "--quiet"], outside, env)
        assert side.returncode == 0 and "in use by a running grade" in side.stderr, side.stderr
        assert "2 students: 2 graded" in (results / "snapshot" / "summary.txt").read_text()
    finally:
        holder.kill()
        holder.wait()

    # the Gradescope bundle's script keeps its evidence where the instructor names: re-judged later
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "submission").mkdir()
    shutil.copy(REPO / "gradescope" / "grade_submission.py", root / "source")
    for script in ("q1.bt", "q2.bt"):
        shutil.copy(SOLUTIONS / script, root / "submission" / script)
    (root / "submission_metadata.json").write_text(json.dumps({"id": 77, "users": [{"email": "cy@example.edu"}]}))
    kept = tmp_path / "gradescope-evidence"
    (root / "source" / "config.yml").write_text(yaml.safe_dump({"lab": str(lab), "vms": "vms.yml",
                                                               "evidence_dir": str(kept)}))
    (root / "source" / "vms.yml").write_text(yaml.safe_dump({"students": [dict(rows[0], student="vm1")]}))
    scored = run([where["python"], root / "source" / "grade_submission.py", root], tmp_path, env, timeout=600)
    assert scored.returncode == 0 and "evidence kept in %s" % kept in scored.stdout, scored.stdout + scored.stderr
    assert json.loads((root / "results" / "results.json").read_text())["score"] >= 6
    row = last_rows(kept)["cy@example.edu"]
    assert row["status"] == "graded" and list(kept.glob("students/*/%s" % row["evidence"]))
    again = run([grade, "report", "--results", kept, "--rejudge", "--quiet"], outside, env)
    assert again.returncode == 0 and "re-judged 1 students from their evidence: 0 verdicts changed" in again.stderr, \
        again.stderr
