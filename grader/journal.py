"""Results are never lost: each student's result is appended to journal.jsonl (fsync'd) and
written as students/<slug>/results.json the moment it is known.  A rerun reads the journal
and skips finished students; a line cut by a crash is ignored (that student is regraded).

Evidence: a graded result's whole basis (the job, each script as run with its hash, bpftrace's
raw output and errors, the truth log, host facts) is written first, as
students/<slug>/evidence-<time>.json, and the journal line names it; one file per grading run,
so a regrade never overwrites what an earlier verdict was decided on."""

import errno
import hashlib
import json
import os
import re
import threading
from pathlib import Path

from .errors import GraderError
from .grading import StudentResult
from .reports import gradescope, write_atomic
from .safetext import safe_tree


def slug(student):
    """A file-system-safe folder name for any student id (the id itself stays in the reports)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", student).strip("._")[:48]
    if clean != student or not clean:
        clean = "%s-%s" % (clean or "student", hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()[:8])
    return clean


_NUMBER = (int, float)


def _sane(data):
    """A journal record the reports can render: the types they format, nothing else checked."""
    if not isinstance(data, dict) or not isinstance(data.get("student"), str) or not data["student"]:
        return False
    if data.get("status") not in ("graded", "not_gradable"):
        return False
    if any(not isinstance(data.get(k, 0), _NUMBER) or isinstance(data.get(k), bool)
           for k in ("score", "max_score", "seconds", "graded_at")):
        return False
    if not isinstance(data.get("exercises", []), list) or not isinstance(data.get("error", ""), str):
        return False
    for ex in data.get("exercises", []):
        if not isinstance(ex, dict) or not all(isinstance(ex.get(k), _NUMBER) for k in ("score", "max_score")):
            return False
        if not all(isinstance(ex.get(k, ""), str) for k in ("id", "title", "reason", "feedback", "output_excerpt")):
            return False
    return True


class Journal:
    def __init__(self, results_dir):
        self.dir = Path(results_dir)
        self.path = self.dir / "journal.jsonl"
        self.lock = threading.Lock()
        try:
            (self.dir / "students").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GraderError("cannot create results folder %s: %s" % (self.dir, exc.strerror))

    def load(self):
        """Finished results by student (the last line wins).  A line that does not parse (cut by a
        crash), or parses to the wrong shape, is skipped: that student is graded again.  Text in a
        line is made safe (grader/safetext.py) as it is read, so a line written before that rule
        (a lone surrogate escape, U+FFFF, bytes that are not UTF-8) still reports; the student id
        stays as written, so a rerun still finds it."""
        done = {}
        try:
            with open(self.path, "r", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        data = json.loads(line)
                    except (ValueError, RecursionError):
                        continue
                    if not _sane(data):
                        continue
                    student = data["student"]
                    data = safe_tree(data)
                    data["student"] = student
                    try:
                        done[student] = StudentResult.from_dict(data)
                    except (KeyError, TypeError, ValueError):
                        continue
        except FileNotFoundError:
            pass
        return done

    def evidence(self, result):
        """The evidence document a journal result names, or None (not gradable, or an older run)."""
        if not result.evidence or "/" in result.evidence or result.evidence.startswith("."):
            return None
        path = self.dir / "students" / slug(result.student) / result.evidence
        try:
            with open(path, "r", errors="replace") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def record(self, result, lab):
        with self.lock:
            try:
                student_dir = self.dir / "students" / slug(result.student)
                student_dir.mkdir(parents=True, exist_ok=True)
                doc = getattr(result, "evidence_doc", None)
                if doc is not None:
                    name = "evidence-%d.json" % int(result.graded_at * 1000)
                    write_atomic(student_dir / name, json.dumps(doc, sort_keys=True))
                    result.evidence = name
                line = json.dumps(result.to_dict(), sort_keys=True) + "\n"
                write_atomic(student_dir / "results.json", json.dumps(gradescope.results_json(result, lab), indent=2))
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    data = line.encode()
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        data = b"\n" + data      # a line cut by a crash must not swallow this one
                    written = os.write(fd, data)
                    if written != len(data):
                        os.ftruncate(fd, size)   # leave no partial line behind (full disk)
                        raise OSError(errno.ENOSPC, "short write")
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise GraderError("cannot write results to %s: %s; free space or fix permissions and rerun "
                                  "(finished students are kept)" % (self.dir, exc.strerror or exc))
