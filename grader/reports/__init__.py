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


FILE_MODE = 0o600      # evidence holds scripts and truth, lms.json emails and SIS ids: the instructor's alone
DIR_MODE = 0o700


def private_dir(path):
    """``mkdir -p path``, each folder it creates made 0700 whatever the umask (mkdir's mode is cut by it)."""
    path = Path(path)
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue                 # another thread made it: its creator sets the mode
        os.chmod(folder, DIR_MODE)


def write_atomic(path, text):
    """Write a file whole (a temporary file, fsync, rename) and 0600 whatever the umask: everything the grader
    writes in a results folder is the instructor's (reports name students and scores; evidence holds their
    scripts and the truth; lms.json their emails and SIS ids)."""
    path = Path(path)
    tmp = path.with_name(".%s.tmp" % path.name)
    # UTF-8 whatever the locale (the HTML says so); "replace" is the last net under clean().
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
        os.fchmod(fd, FILE_MODE)     # a temporary file left by an older run keeps its mode through O_TRUNC
        with open(fd, "w", encoding="utf-8", errors="replace") as fh:
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


def write_all(results, lab, results_dir, source_dir=None):
    """Every report into `results_dir`; ``source_dir`` is the results folder they are made from (its lms.json and
    evidence) when that is another (`report --out`, a report beside a running grade)."""
    from .. import similarity
    from . import canvas, csv_report, html_report, junit, lms, moodle, table

    results_dir = Path(results_dir)
    lms_data = lms.load(Path(source_dir or results_dir))
    write_atomic(results_dir / "gradebook.csv", csv_report.render(results, lab))
    write_atomic(results_dir / "canvas.csv", canvas.render(results, lab, lms_data))
    write_atomic(results_dir / "moodle.csv", moodle.render(results, lab, lms_data))
    write_atomic(results_dir / lms.LEFT_OUT_FILE, lms.left_out(results, lab, lms_data)[0])
    write_atomic(results_dir / "junit.xml", junit.render(results, lab))
    write_atomic(results_dir / "summary.txt", table.render(results, lab))
    scripts = write_student_pages(results, lab, results_dir, source_dir)
    similar = similarity.compare(scripts, lab)         # the cohort's scripts with each other and the references
    write_atomic(results_dir / "index.html", html_report.render(results, lab, lms_data=lms_data, similar=similar))


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


def write_student_pages(results, lab, results_dir, source_dir=None):
    """students/<id>/index.html for every student: the dashboard's link to what a verdict was decided on (read
    from ``source_dir``'s evidence when the pages are written elsewhere).  Returns {student: {question: script}}
    of the graded students, for the similarity report."""
    from ..journal import slug
    from ..similarity import sources_of
    from . import html_report

    scripts = {}
    for r in results:
        student_dir = Path(results_dir) / "students" / slug(r.student)
        private_dir(student_dir)
        evidence_dir = Path(source_dir) / "students" / slug(r.student) if source_dir else student_dir
        doc = _evidence(results_dir, evidence_dir, r)
        if doc and r.status == "graded":
            scripts[r.student] = sources_of(doc)
        write_atomic(student_dir / "index.html", html_report.render_student(r, lab, doc))
    return scripts
