"""What the LMS exports need beyond the journal, and which students they may carry.

Kept in <results>/lms.json so `report` rewrites the same files later: each student's LMS identity (from the roster)
and the export settings (assignment names, the points grades are scaled to, Moodle's identifier column).

Identity fields: name ("Last, First" or "First Last"), email, lms_id (Canvas user ID), sis_id (SIS User ID, Moodle
ID number), login (SIS Login ID, Moodle username), section, integration_id and root_account (Canvas export columns).

A grade goes to an LMS file only when the importer cannot credit it to anyone else (docs/lms.md has the importers'
rules, read from their source: canvas-lms app/models/gradebook_importer.rb, moodle grade/import/csv/classes/
load_data.php):

- graded students only: an empty Canvas cell replaces a score already entered; an empty Moodle grade is "no grade";
  so a student who could not be graded has no row in either file, and their LMS grade stays as it is;
- Canvas: a row needs a Canvas ID (digits: Canvas reads it with to_i, so "12ab" would be user 12), a SIS User ID or
  a SIS Login ID; Canvas never matches by email, and its last resort, the display name, is not unique;
- Moodle: every row has the one identifier column the instructor maps ("Map from"): Moodle keeps the previous row's
  student for a row whose identifier is blank, and aborts the whole import on one it cannot find;
- an identifier two students share leaves both out (either importer would credit both grades to one person).

Whoever is left out is listed with the fix (left_out(), written to lms-left-out.txt and said after each run).
"""

import json
from pathlib import Path

from . import write_atomic
from .csv_report import inert, number

FILE = "lms.json"
LEFT_OUT_FILE = "lms-left-out.txt"

# Moodle's "Map from"/"Map to" identifiers: CLI name -> (identity field, column header as Moodle's export writes it)
MOODLE_MATCH = {"email": ("email", "Email address"), "username": ("login", "Username"),
                "idnumber": ("sis_id", "ID number")}
MOODLE_MATCH_ORDER = ("email", "username", "idnumber")      # the default: most students have it; ties in this order
MOODLE_DEFAULT_MAX = 100    # Moodle aborts an import whose grade is above 100 unless the site raised gradepointmax
CANVAS_IDS = (("lms_id", "ID"), ("sis_id", "SIS User ID"), ("login", "SIS Login ID"))
# Canvas drops a column whose header contains one of these (its totals), and reads these names as its own columns.
CANVAS_NOT_ASSIGNMENT = ("Current Score", "Current Points", "Current Grade", "Final Score", "Final Points",
                         "Final Grade", "Override Score", "Override Grade", "Override Status")
CANVAS_RESERVED = ("Student", "LastName", "FirstName", "ID", "SIS User ID", "SIS Login ID", "Section",
                   "Integration ID", "Root Account")
SETTINGS = ("assignment", "canvas_assignment", "moodle_assignment", "points", "moodle_match")


def default_assignment(lab):
    return "bpfhol %s" % lab.name


def load(results_dir):
    try:
        data = json.loads((Path(results_dir) / FILE).read_text())
        if not isinstance(data, dict):
            raise ValueError
    except (OSError, ValueError):
        data = {}
    students = data.get("students") if isinstance(data.get("students"), dict) else {}
    loaded = {key: str(data.get(key) or "") for key in SETTINGS}
    loaded["students"] = {str(k): {str(f): str(v) for f, v in ids.items()} for k, ids in students.items()
                          if isinstance(ids, dict)}
    return loaded


def remember(results_dir, entries=(), assignment=None, **settings):
    """Merge the roster's identities and the settings given (None: keep the remembered one) into lms.json."""
    data = load(results_dir)
    for entry in entries:
        identity = getattr(entry, "identity", None)
        if identity:
            data["students"][entry.student] = dict(identity)
    settings["assignment"] = assignment
    for key, value in settings.items():
        if key not in SETTINGS:
            raise TypeError("unknown LMS setting %s" % key)
        if value not in (None, ""):
            data[key] = str(value)
    write_atomic(Path(results_dir) / FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


def assignment_name(lab, data, lms=""):
    """The assignment column of canvas.csv (lms="canvas") or moodle.csv (lms="moodle")."""
    return data.get("%s_assignment" % lms) or data.get("assignment") or default_assignment(lab)


def assignment_problem(name, lms):
    """Why an assignment name would not reach its gradebook, or ""."""
    if not name.strip():
        return "the %s assignment name is empty" % lms
    if lms == "canvas":
        if name.strip() in CANVAS_RESERVED:
            return "'%s' is one of Canvas's own column names: give the assignment's name" % name
        hit = next((h for h in CANVAS_NOT_ASSIGNMENT if h in name), "")
        if hit:
            return ("Canvas ignores a column whose name contains '%s' (its totals): rename the assignment" % hit)
    return ""


def points(lab, data):
    """The points the LMS assignment is worth: --lms-points, else the lab's."""
    try:
        value = float(data.get("points") or 0)
    except ValueError:
        value = 0
    return value if value > 0 else float(lab.max_score)


def points_problem(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return "--lms-points %s is not a number (the points the LMS assignment is worth, e.g. 20)" % text
    if not value > 0 or value != value or value > 1e6:
        return "--lms-points must be a positive number of points (e.g. 20), not %s" % text
    return ""


def score_cell(result, lab, data):
    """The grade as the LMS assignment counts it: the fraction of the student's points, times the assignment's
    points, in the CSVs' number format; empty for a student who could not be graded (never a zero)."""
    if result.status != "graded":
        return ""
    out_of = float(result.max_score or lab.max_score)
    target = points(lab, data)
    return number(result.score * target / out_of if out_of else 0)


def split_name(name):
    """("First", "Last") from "Last, First" or "First Last"."""
    if "," in name:
        last, first = name.split(",", 1)
        return first.strip(), last.strip()
    first, _, last = name.strip().rpartition(" ")
    return (first, last) if first else (last, "")


def moodle_match(results, data):
    """The Moodle identifier (email | username | idnumber): the one chosen, else the one most graded students have."""
    chosen = data.get("moodle_match") or ""
    if chosen in MOODLE_MATCH:
        return chosen
    students = data.get("students", {})
    graded = [r for r in results if r.status == "graded"]

    def held(name):
        field = MOODLE_MATCH[name][0]
        return sum(1 for r in graded if students.get(r.student, {}).get(field, "").strip())

    return max(MOODLE_MATCH_ORDER, key=lambda name: (held(name), -MOODLE_MATCH_ORDER.index(name)))


def _shared(rows, fields, fold=()):
    """{student: why} for rows whose value of one of `fields` another row has too (case folded for `fold`)."""
    seen, why = {}, {}
    for student, who in rows:
        for field, label in fields:
            value = who.get(field, "").strip()
            if not value:
                continue
            key = (field, value.lower() if field in fold else value)
            if key in seen and seen[key] != student:
                why.setdefault(student, "shares %s %s with %s" % (label, value, seen[key]))
                why.setdefault(seen[key], "shares %s %s with %s" % (label, value, student))
            seen.setdefault(key, student)
    return why


def fix(what):
    return ("fix: put %s in their roster row, then rerun the grade command (graded students are not graded again) "
            "or `report --lms-roster ROSTER`" % what)


def _unsafe(who, fields):
    """The first identifier a spreadsheet would run as a formula (written with a leading ', it would match no one)."""
    return next((who[f] for f in fields if who.get(f, "").strip() and inert(who[f]) != who[f]), "")


def canvas_rows(results, data):
    """([(result, identity)], [(student, why)]): the graded students canvas.csv carries, and those it leaves out."""
    students = data.get("students", {})
    rows, left = [], []
    for r in results:
        if r.status != "graded":
            continue
        who = students.get(r.student, {})
        lms_id = who.get("lms_id", "").strip()
        if lms_id and not (lms_id.isdigit() and int(lms_id) > 0):
            left.append((r.student, "Canvas ID %r is not a Canvas user ID (a number above 0; a SIS id goes in "
                                    "sis_id or login); %s" % (lms_id[:40], fix("the Canvas ID"))))
        elif not any(who.get(field, "").strip() for field, _ in CANVAS_IDS):
            had = " (Canvas does not match by email)" if who.get("email") else ""
            left.append((r.student, "no Canvas ID, SIS User ID or SIS Login ID in the roster%s; %s"
                                    % (had, fix("lms_id, sis_id or login"))))
        elif _unsafe(who, [f for f, _ in CANVAS_IDS]):
            left.append((r.student, "identifier %r starts like a spreadsheet formula; %s"
                                    % (_unsafe(who, [f for f, _ in CANVAS_IDS])[:40], fix("the right identifier"))))
        else:
            rows.append((r, who))
    dup = _shared([(r.student, who) for r, who in rows], CANVAS_IDS)
    left += [(r.student, "%s; %s" % (dup[r.student], fix("each student's own identifier"))) for r, _ in rows
             if r.student in dup]
    return [(r, who) for r, who in rows if r.student not in dup], left


def moodle_rows(results, data):
    """(match, [(result, identity)], [(student, why)]) for moodle.csv: only students with the chosen identifier."""
    match = moodle_match(results, data)
    field, column = MOODLE_MATCH[match]
    students = data.get("students", {})
    rows, left = [], []
    for r in results:
        if r.status != "graded":
            continue
        who = students.get(r.student, {})
        if who.get(field, "").strip() == "0":       # PHP's empty("0"): Moodle reads it as blank (the row above)
            left.append((r.student, "%s 0 is blank to Moodle's importer; %s" % (column, fix("the real " + field))))
        elif not who.get(field, "").strip():
            left.append((r.student, "no %s in the roster (moodle.csv matches by %s); %s, or choose another "
                                    "identifier with --moodle-match" % (column, column, fix(field))))
        elif _unsafe(who, [field]):
            left.append((r.student, "%s %r starts like a spreadsheet formula; %s"
                                    % (column, who[field][:40], fix("the right " + field))))
        else:
            rows.append((r, who))
    dup = _shared([(r.student, who) for r, who in rows], [(field, column)], fold=("email", "login"))
    left += [(r.student, "%s; %s" % (dup[r.student], fix("each student's own " + field))) for r, _ in rows
             if r.student in dup]
    return match, [(r, who) for r, who in rows if r.student not in dup], left


def left_out(results, lab, data):
    """The report of who canvas.csv and moodle.csv leave out and why (lms-left-out.txt), and its short form for the
    terminal (a list of lines, empty when every graded student is in both files)."""
    _, canvas_left = canvas_rows(results, data)
    match, _, moodle_left = moodle_rows(results, data)
    column = MOODLE_MATCH[match][1]
    graded = sum(1 for r in results if r.status == "graded")
    ungraded = [r.student for r in results if r.status != "graded"]
    lines = ["Who canvas.csv and moodle.csv leave out, and the fix (bpfhol-grade; docs/lms.md says why).", ""]
    for name, left, rule in (
            ("canvas.csv", canvas_left, "Canvas matches a row by ID, SIS User ID or SIS Login ID"),
            ("moodle.csv", moodle_left, "import it with Map from '%s', Map to '%s'" % (column, column))):
        lines.append("%s: %d of %d graded students (%s)" % (name, graded - len(left), graded, rule))
        lines += ["  %s: %s" % (student, why) for student, why in left]
    if ungraded:
        lines.append("not gradable, in neither file (their LMS grade is left as it is): %s" % ", ".join(ungraded))
    problems = [p for p in (assignment_problem(assignment_name(lab, data, "canvas"), "canvas"),) if p]
    if points(lab, data) > MOODLE_DEFAULT_MAX:
        problems.append("moodle.csv grades go up to %s: Moodle refuses grades above 100 unless the site's "
                        "gradepointmax allows them" % number(points(lab, data)))
    lines += ["note: %s" % p for p in problems]
    short = []
    for name, left in (("canvas.csv", canvas_left), ("moodle.csv", moodle_left)):
        if left:
            names = ", ".join(s for s, _ in left[:3]) + (", ..." if len(left) > 3 else "")
            short.append("%s leaves out %d of %d graded students (%s): see %s" % (name, len(left), graded, names,
                                                                                LEFT_OUT_FILE))
    if graded:
        short.append("moodle.csv: import with Map from '%s', Map to '%s'" % (column, column))
    short += ["note: %s" % p for p in problems]
    return "\n".join(lines) + "\n", short

