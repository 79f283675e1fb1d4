"""Cohort gradebook CSV, and the cell rules every CSV the grader writes shares.

Numbers: one format in gradebook.csv, canvas.csv and moodle.csv (number()): at most two decimals, no trailing zeros,
a decimal point, no exponent, no thousands separator ("10", "7.5", "0.33"; never "3.0" beside "10" or "1e+01").
Canvas reads a cell that is only digits, "." and "," as a number (its decimal_comma_to_period converter) and compares
scores at two decimals; Moodle's importer takes a "." number in any language (unformat_float).

Text: cells a spreadsheet would run as formulas are made inert (a leading '), controls removed (reports.clean).
"""

import csv
import io

from . import clean

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "|", "%")


def number(value):
    """The one number format of the CSVs: 10, 7.5, 0.33 (rounded to two decimals)."""
    text = "%.2f" % round(float(value), 2)
    text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def inert(value, limit=500, lines=False):
    """A cell a spreadsheet shows as text.  One line unless ``lines`` (a Moodle feedback cell keeps its lines: the
    importer takes a quoted multi-line cell whole)."""
    text = clean(value, limit).replace("\r", "")
    if not lines:
        text = text.replace("\n", " ")
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
        cells = [number(by_id[i].score) if i in by_id else "" for i in ids]
        score = number(r.score) if r.status == "graded" else ""
        writer.writerow([inert(r.student), r.status, score, number(lab.max_score)] + cells + [inert(r.error)])
    return buf.getvalue()
