"""The student edition in tests: build it, take every script it holds, and find the questions a script passes.

A script students receive may be run as an answer to any question (a student hands in an example as q2.bt), so
each one is judged against every question of its lab, from one real run: `examples_as_submissions` packs a lab's
scripts four to a student (one per question slot), and `questions_passed` judges each script's real output, from
the saved evidence, with every question's check.
"""

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RELEASE = REPO / "scripts" / "release-student"
# `interval:s:N { exit(); }`: a student who runs an example as an answer drops it (the grader stops scripts).
EXIT_BLOCK = re.compile(r"^\s*interval:s:\d+\s*\{\s*exit\(\);?\s*\}\s*$", re.M)


def build_edition(into, worktree=True):
    """scripts/release-student into `into` (the working tree by default: what the tests check is what is here)."""
    r = subprocess.run([str(RELEASE), *(["--worktree"] if worktree else []), str(into)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return Path(into)


def edition_scripts(edition, lab):
    """Every bpftrace script of a lab in the edition, as {relative path: source with its exit() removed}."""
    root = Path(edition) / "labs" / lab
    return {p.relative_to(edition).as_posix(): EXIT_BLOCK.sub("", p.read_text())
            for p in sorted(root.rglob("*.bt"))}


def examples_as_submissions(scripts, lab, folder, references):
    """SUBMISSIONS/<student>/q1.bt ...: the scripts, as many to a student as the lab has questions, and in the
    slots left over (at least one) the lab's reference answers as controls, which must be seen passing so that
    the judging is shown able to find a pass.  Returns {(student, question id): the script's name} (a control's
    name starts with "reference:")."""
    slots = list(lab.exercises)
    names = sorted(scripts)
    batches = [names[n:n + len(slots)] for n in range(0, len(names), len(slots))]
    if len(batches[-1]) == len(slots):
        batches.append([])
    where = {}
    for number, batch in enumerate(batches, 1):
        student = Path(folder) / ("edition_%d" % number)
        student.mkdir(parents=True)
        for n, ex in enumerate(slots):
            if n < len(batch):
                (student / ex.script).write_text(scripts[batch[n]])
                where[(student.name, ex.id)] = batch[n]
            else:
                (student / ex.script).write_text((Path(references) / ex.script).read_text())
                where[(student.name, ex.id)] = "reference:" + ex.id
    return where


def questions_passed(lab, doc):
    """[(slot script name, question id, reason)] for every question a script of this evidence passes."""
    from grader.grading import evaluate

    reply = doc["reply"]
    passed = []
    for item in reply.get("scripts") or []:
        if item.get("status") == "missing":
            continue
        for ex in lab.exercises:
            alone = dict(reply, scripts=[dict(item, name=ex.id)])
            verdict = next(e for e in evaluate(lab, "edition", alone).exercises if e.id == ex.id)
            if verdict.passed:
                passed.append((item.get("name"), ex.id, verdict.reason))
    return passed


def remove(path):
    shutil.rmtree(path, ignore_errors=True)
