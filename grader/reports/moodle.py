"""Moodle grade import CSV (Grades > Import > CSV file).

Written for the importer's rules (moodle grade/import/csv/classes/load_data.php, docs/lms.md):

- the instructor picks one column to identify users ("Map from") and the user field it holds ("Map to": Email
  address, Username or ID number).  A row whose identifier is not a Moodle user aborts the whole import; a row whose
  identifier is BLANK is credited to the student of the row above (the importer keeps the last student it found).
  So moodle.csv has one identifier column, the one chosen (--moodle-match, default: the one most graded students
  have), and a row only for a student who has it, not shared with another row (lms.moodle_rows); the others are
  listed with the fix in lms-left-out.txt;
- an empty grade is "no grade": students who could not be graded have no row, and their Moodle grade stays;
- grades are numbers with a decimal point (unformat_float reads them in any language) and at most 100 unless the
  site's gradepointmax is higher; a new grade item ("New grade item") is out of 100: map the column to a grade item
  whose maximum is the points the grades are out of (--lms-points, else the lab's);
- the feedback column keeps every line of every question's feedback (the importer reads a quoted multi-line cell
  whole and stores it as is).
"""

import csv
import io

from . import clean, lms
from .csv_report import inert, number

NAME_HEADER = ["First name", "Last name"]
FEEDBACK_LIMIT = 2000       # per question, as the grader's own pages cut a student's text
FEEDBACK_TOTAL = 20000


def feedback(result, lab):
    """Per question its score, and for a miss the whole of what to fix (no answers given away)."""
    if result.status != "graded":
        return ""
    parts = []
    for ex in result.exercises:
        head = "%s %s/%s" % (ex.id, number(ex.score), number(ex.max_score))
        text = clean(ex.feedback, FEEDBACK_LIMIT).replace("\r", "").strip() or ex.reason
        parts.append("%s passed" % head if ex.passed else "%s: %s" % (head, text))
    return "\n".join(parts)


def render(results, lab, data):
    match, rows, _ = lms.moodle_rows(results, data)
    field, column = lms.MOODLE_MATCH[match]
    item = inert(lms.assignment_name(lab, data, "moodle"))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(NAME_HEADER + [column, item, "Feedback for %s" % item])
    for r, who in rows:
        first, last = lms.split_name(who.get("name") or r.student)
        writer.writerow([inert(first), inert(last), who[field].strip(), lms.score_cell(r, lab, data),
                         inert(feedback(r, lab), FEEDBACK_TOTAL, lines=True)])
    return buf.getvalue()
