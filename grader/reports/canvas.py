"""Canvas gradebook import CSV (Grades > Import).

The layout of Canvas's own gradebook export, which its importer reads back: the header
`Student,ID,SIS User ID,SIS Login ID,Section,<assignment>`, then the "    Points Possible" row (four leading
spaces, as Canvas writes it) with the assignment's points, then one row per student.  Canvas matches a row by
ID (its user ID), SIS User ID or SIS Login ID; an assignment column named "Name (12345)" updates the existing
assignment 12345, any other name creates a new assignment.  A student who could not be graded gets an empty cell,
which Canvas leaves unchanged (never a zero).
"""

import csv
import io

from . import lms
from .csv_report import inert

HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_POSSIBLE = "    Points Possible"


def render(results, lab, data):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER + [inert(lms.assignment_name(lab, data))])
    writer.writerow([POINTS_POSSIBLE, "", "", "", "", "%g" % lab.max_score])
    for r in results:
        who = data.get("students", {}).get(r.student, {})
        writer.writerow([inert(who.get("name") or r.student), inert(who.get("lms_id", "")),
                         inert(who.get("sis_id", "")), inert(who.get("login", "")), inert(who.get("section", "")),
                         lms.score_cell(r)])
    return buf.getvalue()
