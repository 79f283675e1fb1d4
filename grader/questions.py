"""One question re-run or re-judged, the others kept: `grade --force --question q3`, `report --rejudge --question q3`.

A student's result then mixes verdicts from two grading runs, so it records which evidence file each exercise was
judged on (``question_evidence``; an exercise not listed was judged on the result's own ``evidence``).  A later
re-judge reads each exercise from its own evidence, never judging a kept verdict on a run that did not decide it.
"""

import copy

from .errors import GraderError


def check_question(lab, question):
    """The exercise id, or one line naming the lab's questions."""
    ids = [ex.id for ex in lab.exercises]
    if question not in ids:
        raise GraderError("--question %s: lab %s has no such question (its questions: %s)"
                          % (str(question)[:40], lab.name, ", ".join(ids)))
    return question


def evidence_of(result, ex_id):
    """The evidence file exercise `ex_id` of `result` was judged on."""
    where = result.question_evidence if isinstance(result.question_evidence, dict) else {}
    name = where.get(ex_id)
    return name if isinstance(name, str) and name else result.evidence


def keep_other_questions(previous, fresh, question, same_evidence=False):
    """`previous` with exercise `question` taken from `fresh`, every other exercise as it was.  ``same_evidence``:
    `fresh` was judged from `previous`'s own evidence (a re-judge), else from a new grading run whose evidence the
    journal names when it records the result."""
    merged = copy.deepcopy(previous)
    new_ex = next((e for e in fresh.exercises if e.id == question), None)
    if new_ex is None:
        return merged
    merged.exercises = [copy.deepcopy(new_ex) if e.id == question else e for e in merged.exercises]
    if all(e.id != question for e in previous.exercises):
        merged.exercises.append(copy.deepcopy(new_ex))
    merged.score = sum(e.score for e in merged.exercises)
    merged.max_score = fresh.max_score or previous.max_score
    if same_evidence:
        return merged
    where = {e.id: evidence_of(previous, e.id) for e in previous.exercises if e.id != question}
    merged.question_evidence = {k: v for k, v in where.items() if v}
    merged.evidence = ""                       # the journal names the new run's evidence file
    merged.evidence_doc = getattr(fresh, "evidence_doc", None)
    merged.graded_at, merged.seconds, merged.host = fresh.graded_at, fresh.seconds, fresh.host
    merged.facts, merged.workload = fresh.facts, fresh.workload
    return merged
