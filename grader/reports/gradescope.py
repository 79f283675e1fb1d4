"""Gradescope's autograder format: {score, tests: [{name, status, score, max_score, output}]}."""

from . import clean


def results_json(result, lab):
    tests = []
    for ex in result.exercises:
        tests.append({
            "name": "%s: %s" % (ex.id, ex.title),
            "status": "passed" if ex.passed else "failed",
            "score": ex.score,
            "max_score": ex.max_score,
            "output": clean(ex.feedback + ("\n\nYour output began:\n" + ex.output_excerpt if ex.output_excerpt else "")),
            "visibility": "visible" if ex.visible else "after_published",
        })
    doc = {"score": result.score, "tests": tests, "output": clean(result.error) if result.error else ""}
    if result.status != "graded":
        doc["output"] = clean("not gradable: %s" % result.error)
        doc["score"] = 0
    return doc
