"""Reports, all generated from the journal: terminal table, Gradescope results.json,
CSV gradebook, Canvas and Moodle import CSVs, JUnit XML and a static HTML summary.  Student text is untrusted: it is
escaped (HTML/XML), stripped of control characters and neutralized for spreadsheets."""

import os
import re
from pathlib import Path

CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\x00-\x08\x0b-\x1f\x7f]")


def clean(text, limit=4000):
    """Printable text only: ANSI escapes and control characters removed, length capped."""
    return CONTROL.sub("", str(text))[:limit]


def write_atomic(path, text):
    path = Path(path)
    tmp = path.with_name(".%s.tmp" % path.name)
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_all(results, lab, results_dir):
    from . import canvas, csv_report, html_report, junit, lms, moodle, table

    results_dir = Path(results_dir)
    lms_data = lms.load(results_dir)
    write_atomic(results_dir / "gradebook.csv", csv_report.render(results, lab))
    write_atomic(results_dir / "canvas.csv", canvas.render(results, lab, lms_data))
    write_atomic(results_dir / "moodle.csv", moodle.render(results, lab, lms_data))
    write_atomic(results_dir / "junit.xml", junit.render(results, lab))
    write_atomic(results_dir / "index.html", html_report.render(results, lab))
    write_atomic(results_dir / "summary.txt", table.render(results, lab))
