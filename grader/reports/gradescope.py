"""Gradescope's autograder format: {score, tests: [{name, status, score, max_score, output}]}.

A student who could not be graded gets the failure form: no score and no tests (Gradescope requires one of the
two, so such a file is an autograder failure, never a zero), the reason in `output` and the status in
`extra_data` - the same verdict as the bundle's run_autograder, which writes no results.json at all then."""

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
    if result.status != "graded":
        return {"output": clean("not gradable (this is not a grade; the staff will grade it again): %s"
                                % result.error),
                "extra_data": {"bpfhol_status": result.status, "error": clean(result.error)}}
    return {"score": result.score, "tests": tests, "output": clean(result.error) if result.error else "",
            "extra_data": {"bpfhol_status": result.status}}
