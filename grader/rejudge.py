"""Re-judging a results folder from its saved evidence, so that it cannot corrupt grades.

A results folder holds one lab. Each journal row (and each evidence document) names the lab it was judged by;
a re-judge uses that lab, refuses another one in one line, keeps the replaced verdict beside the new one in
the journal, and lists who changed from what and why (``--dry-run`` lists it and writes nothing).
"""

import sys
import time

from .errors import GraderError, HostError

DEFAULT_LAB = "kprobes"     # what a folder graded before labs were recorded was graded with


def recorded_lab(journal, result):
    """The lab name a journal row was judged with: the row's own, else its evidence's, else '' (unknown)."""
    if result.lab:
        return result.lab
    doc = journal.evidence(result) if result.evidence else None
    if isinstance(doc, dict):
        lab = doc.get("lab")
        if isinstance(lab, dict) and isinstance(lab.get("name"), str):
            return lab["name"]
        job = doc.get("job")
        if isinstance(job, dict) and isinstance(job.get("lab"), str):
            return job["lab"]
    return ""


def recorded_lab_dir(journal, results, name):
    """The lab folder the evidence says `name` was loaded from, if it still holds that lab (a lab graded from a
    path, such as an instructor's edited copy, is re-judged from that path, not from the installed lab)."""
    from pathlib import Path

    for result in results:
        doc = journal.evidence(result) if result.evidence else None
        lab = doc.get("lab") if isinstance(doc, dict) else None
        if isinstance(lab, dict) and lab.get("name") == name and isinstance(lab.get("path"), str):
            path = Path(lab["path"])
            if (path / "lab.yaml").is_file():
                return path
    return None


def folder_lab(journal, results, results_dir):
    """The one lab a results folder was graded with ('' for an empty or pre-label folder).
    Two labs in one folder is an instructor's mix-up, named here rather than graded around."""
    names = sorted({n for n in (recorded_lab(journal, r) for r in results) if n})
    if len(names) > 1:
        raise GraderError("results folder %s holds results of several labs (%s): grade each lab into its own "
                          "--results folder" % (results_dir, ", ".join(names)))
    return names[0] if names else ""


def recorded_variant(journal, results):
    """The course variant (canonical -> drawn names) a folder's evidence was judged with; None when no evidence
    says (a folder graded before variants, or without evidence)."""
    for result in results:
        doc = journal.evidence(result) if result.evidence else None
        lab = doc.get("lab") if isinstance(doc, dict) else None
        if isinstance(lab, dict) and isinstance(lab.get("variant"), dict):
            return lab["variant"]
    return None


def check_same_variant(lab, recorded, results_dir):
    """A folder holds one course's variant: grading with other names would judge students against a workload
    their scripts were not written for."""
    if recorded is None or dict(recorded) == dict(lab.variant):
        return
    if not recorded:
        raise GraderError("results folder %s was graded with the lab's own names, not a course variant: drop "
                          "--course-seed (or use another --results folder)" % results_dir)
    shown = ", ".join("%s=%s" % kv for kv in sorted(recorded.items())[:2])
    raise GraderError("results folder %s was graded with another course variant (%s, ...): pass the --course-seed "
                      "it was graded with (or use another --results folder)" % (results_dir, shown))


def choose_lab(requested, journal, results, results_dir):
    """The Lab to report or re-judge a folder with: the recorded one. ``--lab`` may name it (or its folder),
    never another lab: that would silently re-grade a cohort against questions it never answered."""
    from .labspec import load_lab

    recorded = folder_lab(journal, results, results_dir)
    variant = recorded_variant(journal, results)
    if requested is None:
        if not recorded:
            return load_lab(DEFAULT_LAB, variant=variant)
        where = recorded_lab_dir(journal, results, recorded)
        try:
            lab = load_lab(str(where), variant=variant) if where else load_lab(recorded, variant=variant)
            if lab.name == recorded:
                return lab
            return load_lab(recorded, variant=variant)
        except GraderError as exc:
            if variant and "course variant" in str(exc):
                raise
            raise GraderError("results folder %s was graded with lab '%s', which this grader cannot find: pass "
                              "--lab PATH to that lab's folder" % (results_dir, recorded))
    lab = load_lab(requested, variant=variant)
    check_same_lab(lab, recorded, results_dir, may_omit=True)
    return lab


def check_same_lab(lab, recorded, results_dir, may_omit=False):
    """One line, before anything is graded or written, when `lab` is not the folder's recorded lab."""
    if recorded and lab.name != recorded:
        raise GraderError("results folder %s was graded with lab '%s', not '%s': %spass --lab %s "
                          "(or use another --results folder)"
                          % (results_dir, recorded, lab.name, "omit --lab or " if may_omit else "", recorded))


def _verdicts(result):
    return [(e.id, e.passed, e.reason, e.score, e.max_score) for e in result.exercises]


def _previous(result):
    """What the journal keeps of a replaced verdict (enough to restore or audit it)."""
    return {"status": result.status, "score": result.score, "max_score": result.max_score,
            "graded_at": result.graded_at, "error": result.error,
            "exercises": [{"id": e.id, "passed": e.passed, "reason": e.reason, "score": e.score,
                           "max_score": e.max_score} for e in result.exercises]}


def _mark(ex):
    return "%s %g/%g" % ("PASS" if ex.passed else "FAIL", ex.score, ex.max_score) if ex else "-"


def changes_between(old, new):
    """Rows (student, exercise, old, new, why) for every exercise whose verdict or points changed."""
    if new.status != "graded":
        return [(old.student, "*", "%g/%g" % (old.score, old.max_score), "not gradable", new.error)]
    before = {e.id: e for e in old.exercises}
    after = {e.id: e for e in new.exercises}
    rows = []
    for ex_id in list(after) + [i for i in before if i not in after]:
        a, b = before.get(ex_id), after.get(ex_id)
        if a and b and (a.passed, a.reason, a.score, a.max_score) == (b.passed, b.reason, b.score, b.max_score):
            continue
        why = []
        if a is None:
            why.append("new exercise")
        elif b is None:
            why.append("exercise removed from the lab")
        else:
            if a.reason != b.reason:
                why.append("%s -> %s" % (a.reason or "?", b.reason or "?"))
            if a.max_score != b.max_score:
                why.append("points %g -> %g" % (a.max_score, b.max_score))
            elif a.score != b.score and a.reason == b.reason:
                why.append("score %g -> %g" % (a.score, b.score))
        rows.append((old.student, ex_id, _mark(a), _mark(b), "; ".join(why)))
    return rows


def render_changes(rows, dry_run=False):
    """The table of who changed, for the instructor's terminal (names are made safe to print)."""
    from .reports import clean

    if not rows:
        return ""
    head = ("student", "exercise", "was", "now", "why")
    body = [tuple(clean(str(c))[:60] for c in row) for row in rows]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(4)]
    lines = ["changes%s:" % (" (dry run: nothing written)" if dry_run else "")]
    for row in [head] + body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return "\n".join(lines) + "\n"


def rejudge_all(lab, journal, results, dry_run=False, out=None):
    """Judge each graded student again from their evidence by `lab`; record (unless dry_run) only the students
    whose verdicts changed, each new row keeping the verdict it replaced. Returns the cohort's results."""
    from . import grading

    out = out or sys.stdout
    cohort, rows, changed, judged, missing, other = [], [], 0, 0, 0, 0
    now = lab.identity()
    since = {"spec": 0, "checks": 0}     # students judged before by another lab.yaml, other checks code
    for old in results:
        doc = journal.evidence(old) if old.status == "graded" else None
        if doc is None:
            missing += old.status == "graded"
            cohort.append(old)
            continue
        if recorded_lab(journal, old) not in ("", lab.name):
            other += 1              # folder_lab() refuses this; kept as it was, should a caller skip that check
            cohort.append(old)
            continue
        judged += 1
        then = doc.get("lab") if isinstance(doc.get("lab"), dict) else {}
        for part in since:
            key = part + "_sha256"
            since[part] += bool(then.get(key)) and then.get(key) != now[key]
        try:
            new = grading.rejudge(lab, doc)
        except HostError as exc:
            new = grading.not_gradable(old.student, "re-judged: %s" % exc, old.host)
        new.max_score = lab.max_score
        new.evidence = old.evidence
        new.lab = lab.name
        if new.status != old.status or _verdicts(new) != _verdicts(old):
            changed += 1
            rows.extend(changes_between(old, new))
            new.rejudged = {"at": time.time(), "previous": _previous(old)}
            if not dry_run:
                journal.record(new, lab)
            cohort.append(new)
        else:
            cohort.append(old)
    out.write(render_changes(rows, dry_run))
    out.flush()
    if any(since.values()):
        print("since the first judgement the lab changed: %s (%s)" % (", ".join(
            "%s for %d student%s" % ("its lab.yaml" if part == "spec" else "its checks' code", n, "s" * (n != 1))
            for part, n in since.items() if n), lab.path), file=sys.stderr)
    print("re-judged %d students from their evidence: %d verdicts changed%s%s%s" % (
        judged, changed, ", %d without evidence kept as they were" % missing if missing else "",
        ", %d of another lab kept" % other if other else "",
        " (dry run: nothing written)" if dry_run else ""), file=sys.stderr)
    return cohort
