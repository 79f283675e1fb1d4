"""Results are never lost: each student's result is appended to journal.jsonl (fsync'd) and
written as students/<slug>/results.json the moment it is known.  A rerun reads the journal
and skips finished students; a line cut by a crash is ignored (that student is regraded).

Evidence: a graded result's whole basis (the job, each script as run with its hash, bpftrace's
raw output and errors, the truth log, host facts) is written first, as
students/<slug>/evidence-<time>.json, and the journal line names it; one file per grading run,
so a regrade never overwrites what an earlier verdict was decided on."""

import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

from .errors import ResultsBusy, WriteError
from .grading import StudentResult
from .reports import DIR_MODE, FILE_MODE, gradescope, private_dir, write_atomic
from .safetext import safe_tree


def slug(student):
    """A file-system-safe folder name for any student id (the id itself stays in the reports)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", student).strip("._")[:48]
    if clean != student or not clean:
        clean = "%s-%s" % (clean or "student", hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()[:8])
    return clean


_NUMBER = (int, float)


def _holder(fd):
    """Who holds a results folder, as its lock file says (written by the holder after it took the lock)."""
    try:
        info = json.loads(os.pread(fd, 512, 0) or b"{}")
        return "pid %s on %s, %s since %s" % (int(info["pid"]), str(info["host"])[:64], str(info["command"])[:80],
                                              time.strftime("%H:%M", time.localtime(int(info["since"]))))
    except (OSError, ValueError, KeyError, TypeError):
        return "a grader that has just started"


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


def _owner_only(fd):
    """0600 whatever the umask or an older grader left; a file of another user's is left as it is."""
    try:
        os.fchmod(fd, FILE_MODE)
    except PermissionError:
        pass


LOCK_NAME = ".grader.lock"
_held = {}                      # lock file path -> fd this process holds it by (kept until the process ends)
_held_lock = threading.Lock()


class Journal:
    """A results folder, held by one grader at a time (``hold``): two runs on one folder would
    grade every student twice and the last journal line would decide."""

    def __init__(self, results_dir, wait=False, hold=True, show_output=False):
        """``show_output``: each student's results.json (student-visible) also shows the first lines of their
        scripts' raw output; off by default (feedback only), the evidence keeps the output either way."""
        self.dir = Path(results_dir)
        self.show_output = show_output
        self.path = self.dir / "journal.jsonl"
        self.lock = threading.Lock()
        self._holder_fd = None
        try:
            self._make_private()
        except OSError as exc:
            raise WriteError("cannot write results: the folder %s cannot be created (%s); pick another --results "
                             "or fix its permissions" % (self.dir, exc.strerror))
        if hold:
            self.hold(wait)
            self.remove_stale_temp_files()
        from . import overrides

        self.overrides = overrides.saved(self.dir)   # applied to every result recorded (grader/overrides.py)

    def _make_private(self):
        """The results folder is 0700 and so is every folder the grader makes in it, whatever the umask (under
        umask 022 evidence, lms.json and the reports were world-readable).  A folder that was there already is
        closed too when it is a results folder (an older grader's) or empty, never any other (``--results /tmp``
        must not close /tmp)."""
        existed = self.dir.is_dir()
        if existed and ((self.dir / "journal.jsonl").exists() or (self.dir / LOCK_NAME).exists()
                        or not any(self.dir.iterdir())):
            try:
                os.chmod(self.dir, DIR_MODE)
            except PermissionError:
                pass                 # not ours: the files in it are still 0600
        private_dir(self.dir / "students")

    def hold(self, wait=False):
        """An exclusive flock on <results>/.grader.lock for this process's life (the kernel drops it when
        the process ends, however it ends: no stale lock after a crash).  Held elsewhere: exit 2 naming
        the holder, or with ``wait`` wait for it."""
        path = self.dir / LOCK_NAME
        key = os.path.realpath(path)
        with _held_lock:
            if key in _held:                 # this process holds it already (one grader, several Journal objects)
                self._holder_fd = _held[key]
                return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            _owner_only(fd)
        except OSError as exc:
            raise WriteError("cannot write results: %s (%s); fix the folder's permissions" % (path, exc.strerror))
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if not wait:
                    os.close(fd)
                    raise ResultsBusy("results folder %s is in use by another grader (%s); wait for it to end, "
                                      "pass --wait to queue behind it, or use another --results" % (self.dir, holder))
                if not told:
                    print("bpfhol-grade: waiting for the grader holding %s (%s)" % (self.dir, holder), file=sys.stderr)
                    told = True
                time.sleep(1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": int(time.time()),
                                  "command": " ".join(sys.argv[1:3])[:80]}).encode(), 0)
        self._holder_fd = fd
        with _held_lock:
            _held[key] = fd

    def release(self):
        """Let another grader have the folder before this process ends (tests, long-lived callers)."""
        with _held_lock:
            for key, fd in list(_held.items()):
                if fd == self._holder_fd:
                    del _held[key]
                    os.close(fd)
        self._holder_fd = None

    def remove_stale_temp_files(self):
        """A write cut by a full disk or a crash leaves ``.<name>.tmp``; whoever holds the folder clears them."""
        for folder in [self.dir] + [p for p in (self.dir / "students").iterdir() if p.is_dir()]:
            for tmp in folder.glob(".*.tmp"):
                try:
                    tmp.unlink()
                except OSError:
                    pass

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

    def evidence(self, result, name=None):
        """The evidence document a journal result names (or its file ``name``), or None (not gradable, or an
        older run)."""
        name = name or result.evidence
        if not name or not isinstance(name, str) or "/" in name or name.startswith("."):
            return None
        path = self.dir / "students" / slug(result.student) / name
        try:
            with open(path, "r", errors="replace") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def adjust(self, result):
        """The result as the folder's overrides say (the same rule for every result recorded or compared)."""
        from . import overrides

        return overrides.apply(result, self.overrides)

    def record(self, result, lab):
        with self.lock:
            try:
                self.adjust(result)
                result.lab = result.lab or lab.name
                student_dir = self.dir / "students" / slug(result.student)
                private_dir(student_dir)
                doc = getattr(result, "evidence_doc", None)
                if doc is not None:
                    name = "evidence-%d.json" % int(result.graded_at * 1000)
                    write_atomic(student_dir / name, json.dumps(doc, sort_keys=True))
                    result.evidence = name
                line = json.dumps(result.to_dict(), sort_keys=True) + "\n"
                student_doc = gradescope.results_json(result, lab, show_output=self.show_output)
                write_atomic(student_dir / "results.json", json.dumps(student_doc, indent=2))
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, FILE_MODE)
                try:
                    _owner_only(fd)              # a journal of an older grader was 0644
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
                raise WriteError("cannot write results to %s: %s; free space or fix permissions and rerun "
                                  "(finished students are kept)" % (self.dir, exc.strerror or exc))
