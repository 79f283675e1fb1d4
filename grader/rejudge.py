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


LAB_MEMO = "lab.json"


def remember_lab(results_dir, lab, by):
    """Write <results>/lab.json: the lab folder and points the folder's verdicts were last judged with.  Evidence
    names the lab a student was first graded with; after `report --rejudge --lab COPY` the verdicts are COPY's, so a
    later plain `report` or `grade` must use COPY too (the installed lab's points beside COPY's scores gave a 10/10
    student 11/10)."""
    import json
    from pathlib import Path

    from .reports import write_atomic

    memo = {"name": lab.name, "path": str(Path(lab.path).resolve()), "by": by, "at": time.time(),
            "points": {ex.id: ex.points for ex in lab.exercises}}
    try:
        write_atomic(Path(results_dir) / LAB_MEMO, json.dumps(memo, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise GraderError("cannot write %s/%s: %s" % (results_dir, LAB_MEMO, exc.strerror))


def remembered_lab(results_dir):
    """The lab.json of a results folder ({name, path, points, by}) when it is whole, else None."""
    import json
    from pathlib import Path

    try:
        memo = json.loads((Path(results_dir) / LAB_MEMO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(memo, dict) or not all(isinstance(memo.get(k), str) for k in ("name", "path")):
        return None
    return memo if isinstance(memo.get("points"), dict) else None


def remembered_lab_dir(results_dir, name):
    """The folder lab.json names for lab `name`, while it still holds lab.yaml."""
    from pathlib import Path

    memo = remembered_lab(results_dir)
    if memo and memo["name"] == name and (Path(memo["path"]) / "lab.yaml").is_file():
        return Path(memo["path"])
    return None


def lab_argument(name, where):
    """What to pass as --lab for lab `name` loaded from folder `where`: its name when the grader finds that same
    folder by name, else the folder's path (a lab graded from a copy is unknown by name)."""
    import shlex
    from pathlib import Path

    from .labspec import find_lab_dir

    if where is None:
        return name
    try:
        if Path(find_lab_dir(name)).resolve() == Path(where).resolve():
            return name
    except GraderError:
        pass
    return shlex.quote(str(where))


def folder_lab_dir(journal, results, results_dir, name):
    """The folder of the lab the folder's verdicts were last judged with: lab.json's, else the evidence's."""
    return remembered_lab_dir(results_dir, name) or recorded_lab_dir(journal, results, name)


def check_same_points(lab, results_dir, rejudge=False):
    """A plain report or grade with a lab whose points differ from those the folder was last judged with would put
    scores of one beside the maximum of the other: refused, naming what works."""
    memo = remembered_lab(results_dir)
    if rejudge or not memo or memo["name"] != lab.name:
        return
    points = {ex.id: ex.points for ex in lab.exercises}
    if {k: float(v) for k, v in memo["points"].items() if isinstance(v, (int, float))} == \
            {k: float(v) for k, v in points.items()}:
        return
    raise GraderError("results folder %s was last judged with the lab in %s, whose points differ from %s's: omit "
                      "--lab, pass --lab %s, or re-judge the folder with this lab first (report --rejudge --lab ...)"
                      % (results_dir, memo["path"], lab.path, lab_argument(lab.name, memo["path"])))


def choose_lab(requested, journal, results, results_dir, rejudge=False):
    """The Lab to report or re-judge a folder with: the recorded one (the folder a re-judge last used, see
    remember_lab). ``--lab`` may name it (or its folder), never another lab: that would silently re-grade a cohort
    against questions it never answered."""
    from .labspec import load_lab

    recorded = folder_lab(journal, results, results_dir)
    variant = recorded_variant(journal, results)
    if requested is None:
        if not recorded:
            return load_lab(DEFAULT_LAB, variant=variant)
        where = folder_lab_dir(journal, results, results_dir, recorded)
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
    check_same_lab(lab, recorded, results_dir, may_omit=True,
                   where=folder_lab_dir(journal, results, results_dir, recorded) if recorded else None)
    check_same_points(lab, results_dir, rejudge)
    return lab


def check_same_lab(lab, recorded, results_dir, may_omit=False, where=None):
    """One line, before anything is graded or written, when `lab` is not the folder's recorded lab.  It suggests
    what works: the lab's name when the grader knows it by that name, else the folder it was graded from."""
    if recorded and lab.name != recorded:
        raise GraderError("results folder %s was graded with lab '%s', not '%s': %spass --lab %s "
                          "(or use another --results folder)"
                          % (results_dir, recorded, lab.name, "omit --lab or " if may_omit else "",
                             lab_argument(recorded, where)))


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


def _rejudge_one(lab, journal, old, doc, question=None):
    """`old` judged again by `lab`: each exercise from the evidence it was judged on (a `--question` re-run mixes
    two runs, grader/questions.py), its late penalty and the folder's overrides applied again; with ``question``
    only that exercise is judged, the others kept as they were."""
    from . import grading
    from .late import reapply
    from .overrides import undo
    from .questions import evidence_of, keep_other_questions

    try:
        new = grading.rejudge(lab, doc)
    except HostError as exc:
        return grading.not_gradable(old.student, "re-judged: %s" % exc, old.host)
    new.max_score = lab.max_score
    new.evidence = old.evidence
    new.lab = lab.name
    new.mode = old.mode
    if new.status == "graded":
        elsewhere = {e.id: evidence_of(old, e.id) for e in old.exercises if evidence_of(old, e.id) != old.evidence}
        kept = []
        for name in sorted(set(elsewhere.values())):
            other = journal.evidence(old, name)
            try:
                judged = grading.rejudge(lab, other) if other else None
            except HostError:
                judged = None
            for ex_id in [i for i, n in elsewhere.items() if n == name]:
                if judged is None or judged.status != "graded":
                    kept.append(ex_id)
                    continue
                fresh = next((e for e in judged.exercises if e.id == ex_id), None)
                new.exercises = [fresh if e.id == ex_id and fresh else e for e in new.exercises]
        new.question_evidence = dict(old.question_evidence) if isinstance(old.question_evidence, dict) else {}
        new.score = sum(e.score for e in new.exercises)
        reapply(new, old)
        if kept:                        # an evidence file is gone: those verdicts stay as recorded
            was = {e.id: e for e in undo(_copy(old)).exercises}
            new.exercises = [was.get(e.id, e) if e.id in kept else e for e in new.exercises]
            new.score = sum(e.score for e in new.exercises)
    if question and old.status == "graded" and new.status == "graded":
        new = keep_other_questions(undo(_copy(old)), new, question, same_evidence=True)
        new.lab, new.max_score = lab.name, lab.max_score
    return journal.adjust(new)


def _copy(result):
    import copy

    return copy.deepcopy(result)


def rejudge_all(lab, journal, results, dry_run=False, out=None, question=None):
    """Judge each graded student again from their evidence by `lab` (``question``: only that exercise); record
    (unless dry_run) only the students whose verdicts changed, each new row keeping the verdict it replaced.
    Returns the cohort's results."""

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
        new = _rejudge_one(lab, journal, old, doc, question)
        if new.status != old.status or _verdicts(new) != _verdicts(old) or new.score != old.score:
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
