"""The instructor's grade overrides: a file of (student, question or total, points, reason) rows.

`report --overrides FILE` (or `grade --overrides FILE`) checks the file against the lab and the results folder,
keeps it as <results>/overrides.json, and records every student it changes as a new journal line; from then on
the journal applies it to every result it records (a re-judge, `grade --force`, `--question`), so each report
and LMS export reads overridden scores from the result model and needs no rule of its own.  An overridden
exercise's feedback starts with OVERRIDE_MARK, and the result lists what was overridden, from what, and why.

Applying is idempotent: a result's earlier overrides are undone (the judged points are kept beside them) before
the current file's are applied, so a changed or emptied file takes effect and nothing is applied twice.
Passing an empty file (header only) removes every override.
"""

import json
from pathlib import Path

from .errors import GraderError
from .sidefile import read_side_file

NAME = "overrides.json"
OVERRIDE_MARK = "Instructor override: "
TOTAL = "total"


def _rows(path):
    kind, data = read_side_file(path, "overrides file", ("student", "question", "points", "reason"))
    if kind == "csv":
        return data
    data = data or []
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise GraderError("overrides file %s must be a list of {student, question, points, reason}, e.g. "
                          "`- {student: alice, question: q3, points: 4, reason: regrade request}`" % path)
    return [(i + 1, row) for i, row in enumerate(data)]


def load(path, lab, students):
    """The overrides in `path`, checked: every student in `students`, every question the lab's (or 'total'),
    points a number from 0 to that question's (or the lab's) maximum, a reason given, one row per student and
    question.  Bad input is one line naming the row and the fix."""
    out, seen = [], set()
    maxima = {ex.id: float(ex.points) for ex in lab.exercises}
    for where, row in _rows(path):
        at = "overrides file %s row %d" % (path, where)
        student = str(row.get("student") or "").strip()
        question = str(row.get("question") or "").strip() or TOTAL
        reason = str(row.get("reason") or "").strip()
        if student not in students:
            raise GraderError("%s: student %r is not in the results folder (check the spelling: it must be the "
                              "roster's student id)" % (at, student[:60]))
        if question != TOTAL and question not in maxima:
            raise GraderError("%s: question %r is not one of lab %s's (%s) or 'total'"
                              % (at, question[:40], lab.name, ", ".join(maxima)))
        top = maxima.get(question, float(lab.max_score))
        try:
            points = float(str(row.get("points")).strip())
        except ValueError:
            points = None
        if points is None or not 0 <= points <= top:
            raise GraderError("%s: points %r must be a number from 0 to %g (%s's maximum)"
                              % (at, str(row.get("points"))[:20], top, question))
        if not reason:
            raise GraderError("%s: give a reason (it is shown to the student and kept in the journal)" % at)
        if (student, question) in seen:
            raise GraderError("%s: a second row for %s %s (keep one)" % (at, student, question))
        seen.add((student, question))
        out.append({"student": student, "question": question, "points": points, "reason": reason[:500]})
    return out


def saved(results_dir):
    """The overrides kept in a results folder ([] when none)."""
    try:
        data = json.loads((Path(results_dir) / NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    rows = data.get("overrides") if isinstance(data, dict) else None
    return [r for r in rows or [] if isinstance(r, dict) and isinstance(r.get("student"), str)
            and isinstance(r.get("question"), str) and isinstance(r.get("points"), (int, float))]


def save(results_dir, overrides, source):
    import time

    from .reports import write_atomic

    try:
        write_atomic(Path(results_dir) / NAME, json.dumps({"source": str(source), "at": time.time(),
                                                           "overrides": overrides}, indent=1) + "\n")
    except OSError as exc:
        raise GraderError("cannot write %s/%s: %s" % (results_dir, NAME, exc.strerror))


def undo(result):
    """The result as judged: every override it carries taken back."""
    for rec in result.overrides if isinstance(result.overrides, list) else []:
        if not isinstance(rec, dict) or rec.get("question") == TOTAL:
            continue
        ex = next((e for e in result.exercises if e.id == rec.get("question")), None)
        if ex is None or not ex.feedback.startswith(OVERRIDE_MARK):
            continue                   # a re-run replaced this exercise: nothing of the override is left on it
        ex.score, ex.passed = float(rec.get("judged", ex.score)), bool(rec.get("judged_passed", ex.passed))
        ex.feedback = ex.feedback.split("\n", 1)[1] if "\n" in ex.feedback else ""
    if result.overrides and result.status == "graded":
        result.score = sum(e.score for e in result.exercises)
    if result.error.startswith(OVERRIDE_MARK):
        result.error = result.error.split("\n", 1)[1] if "\n" in result.error else ""
    result.overrides = []
    return result


def apply(result, overrides):
    """`result` with the overrides that name its student (graded results only: a student who could not be graded
    is graded first)."""
    undo(result)
    mine = [o for o in overrides if o["student"] == result.student]
    if not mine or result.status != "graded":
        return result
    records = []
    for o in sorted(mine, key=lambda o: o["question"] == TOTAL):
        if o["question"] == TOTAL:
            judged = sum(e.score for e in result.exercises)
            records.append({"question": TOTAL, "points": o["points"], "judged": judged, "reason": o["reason"]})
            continue
        ex = next((e for e in result.exercises if e.id == o["question"]), None)
        if ex is None:
            continue
        records.append({"question": ex.id, "points": o["points"], "judged": ex.score, "judged_passed": ex.passed,
                        "reason": o["reason"]})
        ex.feedback = "%s%g of %g points (judged %g): %s\n%s" % (OVERRIDE_MARK, o["points"], ex.max_score, ex.score,
                                                                  o["reason"], ex.feedback)
        ex.score, ex.passed = o["points"], o["points"] >= ex.max_score
    result.score = sum(e.score for e in result.exercises)
    total = next((r for r in records if r["question"] == TOTAL), None)
    if total:
        total["judged"] = result.score
        result.score = total["points"]
        note = "%stotal %g (judged %g): %s" % (OVERRIDE_MARK, total["points"], total["judged"], total["reason"])
        result.error = note + ("\n" + result.error if result.error else "")
    result.overrides = records
    return result
