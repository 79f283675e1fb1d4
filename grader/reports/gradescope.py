"""Gradescope's autograder format: {score, tests: [{name, status, score, max_score, output}]}.

A student who could not be graded gets the failure form: no score and no tests (Gradescope requires one of the
two, so such a file is an autograder failure, never a zero), the reason in `output` and the status in
`extra_data` - the same verdict as the bundle's run_autograder, which writes no results.json at all then.

results.json is what the student sees.  By default it carries the feedback only, never the script's raw output:
a script that cat()s a file or traces another process's writes would otherwise show the student what it read
("Your output began: -----BEGIN OPENSSH PRIVATE KEY-----").  Showing the output is the instructor's choice
(``show_output``); the evidence and the dashboard keep it either way."""

from . import clean

OUTPUT_HEADING = "\n\nYour output began:\n"


def results_json(result, lab, show_output=False):
    """The student-visible document; ``show_output`` adds the first lines of each script's output."""
    tests = []
    for ex in result.exercises:
        shown = OUTPUT_HEADING + ex.output_excerpt if show_output and ex.output_excerpt else ""
        tests.append({
            "name": "%s: %s" % (ex.id, ex.title),
            "status": "passed" if ex.passed else "failed",
            "score": ex.score,
            "max_score": ex.max_score,
            "output": clean(ex.feedback + shown),
            "visibility": "visible" if ex.visible else "after_published",
        })
    if result.status != "graded":
        return {"output": clean("not gradable (this is not a grade; the staff will grade it again): %s"
                                % result.error),
                "extra_data": {"bpfhol_status": result.status, "error": clean(result.error)}}
    return {"score": result.score, "tests": tests, "output": clean(result.error) if result.error else "",
            "extra_data": {"bpfhol_status": result.status}}
