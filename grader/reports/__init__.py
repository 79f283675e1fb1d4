"""Reports, all generated from the journal: terminal table, Gradescope results.json, CSV gradebook, Canvas and
Moodle import CSVs, JUnit XML and a static HTML summary.  Student and host text is untrusted: every writer passes
it through clean() (the rules of grader/safetext.py: nothing XML, HTML or CSV cannot hold, no terminal escapes,
length capped), then escapes it for its format (HTML/XML) or makes it inert for spreadsheets."""

import os
from pathlib import Path

from ..safetext import safe_text


def clean(text, limit=4000):
    """Printable text only: invalid Unicode replaced, escapes and controls removed, length capped."""
    return safe_text(text)[:limit]


def write_atomic(path, text):
    path = Path(path)
    tmp = path.with_name(".%s.tmp" % path.name)
    # UTF-8 whatever the locale (the HTML says so); "replace" is the last net under clean().
    try:
        with open(tmp, "w", encoding="utf-8", errors="replace") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)          # a full disk must not leave a half file behind
        except OSError:
            pass
        raise


def write_all(results, lab, results_dir):
    from . import canvas, csv_report, html_report, junit, lms, moodle, table

    results_dir = Path(results_dir)
    lms_data = lms.load(results_dir)
    write_atomic(results_dir / "gradebook.csv", csv_report.render(results, lab))
    write_atomic(results_dir / "canvas.csv", canvas.render(results, lab, lms_data))
    write_atomic(results_dir / "moodle.csv", moodle.render(results, lab, lms_data))
    write_atomic(results_dir / "junit.xml", junit.render(results, lab))
    write_atomic(results_dir / "summary.txt", table.render(results, lab))
    write_student_pages(results, lab, results_dir)
    write_atomic(results_dir / "index.html", html_report.render(results, lab))


def _evidence(results_dir, student_dir, result):
    import json

    name = result.evidence or ""
    if not name or "/" in name or name.startswith("."):
        return None
    try:
        with open(student_dir / name, "r", encoding="utf-8", errors="replace") as fh:
            doc = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def write_student_pages(results, lab, results_dir):
    """students/<id>/index.html for every student: the dashboard's link to what a verdict was decided on."""
    from ..journal import slug
    from . import html_report

    for r in results:
        student_dir = Path(results_dir) / "students" / slug(r.student)
        student_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(student_dir / "index.html",
                     html_report.render_student(r, lab, _evidence(results_dir, student_dir, r)))
