"""Late penalties: `--late-penalty 10%/day` takes points off each exercise whose script changed after the student's
deadline (``--deadline``, ``--extensions``), for every started day (or hour) late, down to 0.

It is the same rule in both modes: `grade --pool` reads the modification times from the collection it keeps,
`grade` (each student's own VM) asks the student's agent for them after grading.  A modification time comes from a
machine where the student is root: evidence, not proof (grader/collect.py); a firm cut-off is `--pool` collecting
at the deadline.  The penalty is shown in the exercise's feedback and kept in the result (``submitted``) so a
re-judge applies it again to the re-judged verdicts.
"""

import math
import re

from .errors import GraderError

UNITS = {"day": 86400, "hour": 3600}
PENALTY_MARK = "late penalty: "


def parse_penalty(text):
    """'10%/day' -> (0.10, 86400); '2.5%/hour' -> (0.025, 3600)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*/\s*(day|hour)\s*", str(text or ""))
    if not m or not 0 < float(m.group(1)) <= 100:
        raise GraderError("--late-penalty %r: write it as PERCENT%%/day or PERCENT%%/hour, e.g. 10%%/day "
                          "(points off per started day late, at most 100%%)" % str(text)[:40])
    return float(m.group(1)) / 100, UNITS[m.group(2)]


def penalize(result, late, deadline, policy):
    """Take the penalty off each exercise in ``late`` ({exercise id: when its script changed}); returns the
    points taken off per exercise.  The feedback says by how much and why."""
    from .collect import iso

    fraction, unit = parse_penalty(policy)
    taken = {}
    for ex in result.exercises:
        when = late.get(ex.id)
        if not isinstance(when, (int, float)) or when <= deadline:
            continue
        started = math.ceil((when - deadline) / unit)
        cut = min(1.0, started * fraction)
        lost = round(ex.score * cut, 3)
        taken[ex.id] = lost
        ex.score = round(ex.score - lost, 3)
        ex.feedback = ("%s-%g points (%s x %d %s%s late: changed at %s, deadline %s)\n%s" % (
            PENALTY_MARK, lost, policy, started, "day" if unit == 86400 else "hour", "s" * (started != 1),
            iso(when), iso(deadline), ex.feedback)).strip()
    result.score = sum(e.score for e in result.exercises)
    result.submitted = dict(result.submitted or {}, penalty={"policy": policy, "points": taken})
    return taken


def reapply(new, old):
    """A re-judged result keeps the collection record of the result it replaces, and its late penalty."""
    submitted = old.submitted if isinstance(old.submitted, dict) else {}
    if not submitted:
        return new
    new.submitted = dict(submitted)
    policy = (submitted.get("penalty") or {}).get("policy") if isinstance(submitted.get("penalty"), dict) else None
    deadline = submitted.get("deadline")
    late = submitted.get("late") if isinstance(submitted.get("late"), dict) else {}
    if new.status != "graded" or not isinstance(deadline, (int, float)):
        return new
    if submitted.get("late_policy") == "refuse":
        for ex in new.exercises:
            if ex.id in late:
                ex.passed, ex.score, ex.reason = False, 0.0, "late"
                ex.feedback = "changed after the deadline: not graded."
        new.score = sum(e.score for e in new.exercises)
    elif policy:
        penalize(new, late, deadline, policy)
    else:
        from .collect import iso

        for ex in new.exercises:
            if isinstance(late.get(ex.id), (int, float)):
                ex.feedback = ("late: changed at %s, after the deadline %s.\n%s"
                               % (iso(late[ex.id]), iso(deadline), ex.feedback)).strip()
    return new
