"""Moodle grade import CSV (Grades > Import > CSV file).

Columns as Moodle's own grade export names them: First name, Last name, Email address, Username, ID number, then
the grade item and its feedback.  On import, "Map from" Email address (or Username / ID number) "Map to" the same
user field, and map the two last columns to the grade item and to "Feedback for <item>" (or "New grade item").
A student who could not be graded has no row at all: an empty grade cell on import clears a grade the teacher
entered by hand (found on re-import), so the file changes only what the grader knows.
"""

import csv
import io

from . import clean, lms
from .csv_report import inert

HEADER = ["First name", "Last name", "Email address", "Username", "ID number"]


def feedback(result, lab):
    """One line: per exercise its score, and for a miss the first line of what to fix (no answers given away)."""
    if result.status != "graded":
        return ""
    lines = []
    for ex in result.exercises:
        first = clean(ex.feedback, 300).strip().splitlines()[:1]
        lines.append("%s %g/%g %s" % (ex.id, ex.score, ex.max_score,
                                      "passed" if ex.passed else "- " + (first[0] if first else ex.reason)))
    return "; ".join(lines)


def render(results, lab, data):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    item = lms.assignment_name(lab, data)
    writer.writerow(HEADER + [inert(item), inert("Feedback for %s" % item)])
    for r in results:
        if r.status != "graded":
            continue
        who = data.get("students", {}).get(r.student, {})
        first, last = lms.split_name(who.get("name") or r.student)
        writer.writerow([inert(first), inert(last), inert(who.get("email", "")), inert(who.get("login", "")),
                         inert(who.get("sis_id", "")), lms.score_cell(r), inert(feedback(r, lab))])
    return buf.getvalue()
