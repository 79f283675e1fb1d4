"""Submissions mode: SUBMISSIONS/<student-id>/q1.bt … graded on lab VMs the instructor names."""

from dataclasses import dataclass, field
from pathlib import Path

from .errors import GraderError
from .roster import id_problem


@dataclass
class Submission:
    student: str
    scripts: dict = field(default_factory=dict)
    uploads: dict = field(default_factory=dict)
    problem: str = ""


def load_submissions(folder, lab):
    root = Path(folder)
    if not root.is_dir():
        raise GraderError("submissions folder not found: %s (expected SUBMISSIONS/<student-id>/q1.bt ...)" % root)
    subs = []
    for student_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        shown, bad_id = id_problem(student_dir.name)
        sub = Submission(student=shown, problem=bad_id)
        for ex in lab.exercises:
            # Remote names come from the lab spec, never from the student's folder.
            sub.scripts[ex.id] = ("upload", ex.script)
            path = student_dir / ex.script
            if path.is_symlink() or not path.is_file():
                continue
            with open(path, "rb") as fh:
                sub.uploads[ex.script] = fh.read(lab.script_cap + 1)
        subs.append(sub)
    if not subs:
        raise GraderError("no student folders in %s (expected SUBMISSIONS/<student-id>/q1.bt ...)" % root)
    return subs
