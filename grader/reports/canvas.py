"""Canvas gradebook import CSV (Grades > Import).

The layout of Canvas's own gradebook export, which its importer (canvas-lms app/models/gradebook_importer.rb) reads
back: the header `Student,ID,SIS User ID,SIS Login ID,[Integration ID,][Root Account,]Section,<assignment>`, the
"    Points Possible" row with the assignment's points, then one row per student.  The importer's rules this file
is written for (docs/lms.md):

- a row is a student unless its first cell contains "Points Possible" or every cell is blank, "Muted" or "Manual
  Posting"; it is matched by ID (read with to_i), else SIS User ID, else SIS Login ID (within the Root Account
  column's account when there is one), else by display name, else it is an unknown student.  So every row here
  has an ID, SIS User ID or SIS Login ID (lms.canvas_rows), and the Student cell never says "Points Possible";
- a blank cell over an existing score is a change (the score is removed): students who could not be graded have
  no row, and their Canvas grade stays;
- an assignment column named "Name (12345)" updates assignment 12345, one named exactly as an existing assignment
  updates that one, any other name creates one; a header containing "Current Score", "Final Grade" and the like is
  dropped as a total.  The Points Possible row sets the assignment's points: it says the points the cells are out
  of (--lms-points, else the lab's), so give --lms-points the Canvas assignment's points;
- Canvas compares scores at two decimals and reads "7.5" in any language: the cells use csv_report.number().
"""

import csv
import io

from . import lms
from .csv_report import inert, number

HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_POSSIBLE = "    Points Possible"
OPTIONAL = (("integration_id", "Integration ID"), ("root_account", "Root Account"))   # between SIS Login ID, Section


def student_cell(result, who):
    name = inert(who.get("name") or result.student)
    return name.replace("Points Possible", "Points-Possible")     # the importer would read it as the points row


def render(results, lab, data):
    rows, _ = lms.canvas_rows(results, data)
    extra = [(field, header) for field, header in OPTIONAL if any(who.get(field) for _, who in rows)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER[:4] + [h for _, h in extra] + ["Section", inert(lms.assignment_name(lab, data, "canvas"))])
    writer.writerow([POINTS_POSSIBLE] + [""] * (4 + len(extra)) + [number(lms.points(lab, data))])
    for r, who in rows:
        writer.writerow([student_cell(r, who)] + [who.get(f, "").strip() for f in ("lms_id", "sis_id", "login")]
                        + [inert(who.get(f, "")) for f, _ in extra]
                        + [inert(who.get("section", "")), lms.score_cell(r, lab, data)])
    return buf.getvalue()
