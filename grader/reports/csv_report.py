"""Cohort gradebook CSV.  Cells that a spreadsheet would run as formulas are made inert."""

import csv
import io

from . import clean

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "|", "%")


def inert(value):
    text = clean(value, 500).replace("\n", " ")
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


def render(results, lab):
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL)
    ids = [ex.id for ex in lab.exercises]
    writer.writerow(["student", "status", "score", "max_score"] + ids + ["note"])
    for r in results:
        by_id = {e.id: e for e in r.exercises}
        cells = [str(by_id[i].score) if i in by_id else "" for i in ids]
        score = r.score if r.status == "graded" else ""
        writer.writerow([inert(r.student), r.status, score, lab.max_score] + cells + [inert(r.error)])
    return buf.getvalue()
