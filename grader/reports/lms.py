"""What the LMS exports need beyond the journal: each student's LMS identity (from the roster) and the assignment's
name, kept in <results>/lms.json so `report` rewrites the same files later.

Identity fields: name ("Last, First" or "First Last"), email, lms_id (Canvas user ID), sis_id (SIS User ID, Moodle
ID number), login (SIS Login ID, Moodle username), section.
"""

import json
from pathlib import Path

from . import write_atomic

FILE = "lms.json"


def default_assignment(lab):
    return "bpfhol %s" % lab.name


def load(results_dir):
    try:
        data = json.loads((Path(results_dir) / FILE).read_text())
    except (OSError, ValueError):
        return {"assignment": "", "students": {}}
    students = data.get("students") if isinstance(data.get("students"), dict) else {}
    return {"assignment": str(data.get("assignment") or ""),
            "students": {str(k): {str(f): str(v) for f, v in (ids or {}).items()} for k, ids in students.items()
                         if isinstance(ids, dict)}}


def remember(results_dir, entries=(), assignment=None):
    """Merge the roster's identities (and the assignment name, when given) into lms.json."""
    data = load(results_dir)
    for entry in entries:
        identity = getattr(entry, "identity", None)
        if identity:
            data["students"][entry.student] = dict(identity)
    if assignment:
        data["assignment"] = assignment
    write_atomic(Path(results_dir) / FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


def assignment_name(lab, data):
    return data.get("assignment") or default_assignment(lab)


def split_name(name):
    """("First", "Last") from "Last, First" or "First Last"."""
    if "," in name:
        last, first = name.split(",", 1)
        return first.strip(), last.strip()
    first, _, last = name.strip().rpartition(" ")
    return (first, last) if first else (last, "")


def score_cell(result):
    """The grade as an LMS reads it; empty for a student who could not be graded (never a zero)."""
    return "%g" % result.score if result.status == "graded" else ""


def unmatched(results, data, fields=("email", "lms_id", "sis_id", "login")):
    """Students with no identity an LMS can match them by."""
    students = data.get("students", {})
    return [r.student for r in results if not any(students.get(r.student, {}).get(f) for f in fields)]
