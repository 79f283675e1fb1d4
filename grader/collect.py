"""Grades that count: collect each student's scripts from their own VM, grade them on the instructor's pool.

`grade ROSTER --pool VMS` runs in two steps.  First every student's scripts are fetched from their VM (the agent's
``collect``: content, sha256, size, modification time) into ``<results>/collected/<student>/`` with a
``manifest.json``; a student collected once keeps that collection (the scripts as they were when the instructor
collected them) until ``--recollect``.  Then the collected scripts are graded on the pool, the instructor's lab
VMs, through the submissions path: one student per VM at a time.

What each step trusts:
- Collecting trusts the student's VM only for which scripts the student hands in, which is theirs to decide
  anyway: a forged agent, a replaced bpftrace or a doctored truth log there changes nothing, since nothing runs
  there.  The content hashes are the instructor's record of what was graded.
- A modification time comes from the student's VM, where the student is root: it is evidence, not proof (a root
  user can set any mtime).  The firm cut-off is the collection itself, made by the instructor at the deadline:
  ``collected_at`` is the instructor's clock.  ``--deadline`` flags (or with ``--late refuse``, does not grade)
  a script whose mtime is after the student's deadline (``--extensions`` gives students later ones).
- Grading trusts the pool VMs, which the instructor controls (no student is root there).
"""

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from .errors import GraderError, HostError
from .journal import slug
from .labspec import expand_home
from .sidefile import read_side_file
from .reports import private_dir, write_atomic
from .submissions import Submission

MANIFEST = "manifest.json"
LATE_POLICIES = ("flag", "refuse")


# -- deadlines --------------------------------------------------------------------------------------------------


def parse_time(text, what="--deadline"):
    """An ISO 8601 time (2026-12-14T23:59, 2026-12-14 23:59:00+01:00, ...) as epoch seconds; a time without a
    zone is this machine's local time."""
    try:
        when = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise GraderError("%s %r is not a time: write it as 2026-12-14T23:59 (local time) or "
                          "2026-12-14T23:59+01:00" % (what, str(text)[:60]))
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()


def load_extensions(path):
    """{student: deadline (epoch)} from a CSV (columns student,deadline) or YAML ({student: deadline}) file."""
    kind, data = read_side_file(path, "extensions file", ("student", "deadline"))
    if kind == "csv":
        pairs = [(row["student"], row["deadline"]) for _, row in data]
    else:
        data = data or {}
        if not isinstance(data, dict):
            raise GraderError("extensions file %s must map each student to a deadline, e.g. `alice: "
                              "2026-12-16T23:59`" % path)
        pairs = list(data.items())
    return {str(student).strip(): parse_time(when, "extension of %s:" % student) for student, when in pairs}


def iso(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch else "?"


# -- collecting --------------------------------------------------------------------------------------------------


def script_paths(lab, entry):
    """The paths on the student's VM that hold their answers (as cohort mode reads them)."""
    answers = entry.answers or expand_home(lab.answers_dir, entry.student_user)
    return {ex.script: "%s/%s" % (answers.rstrip("/"), ex.script) for ex in lab.exercises}


def collection_dir(results_dir, student):
    return Path(results_dir) / "collected" / slug(student)


def load_manifest(results_dir, student):
    try:
        data = json.loads((collection_dir(results_dir, student) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("student") == student else None


def collect_one(backend, lab, entry, results_dir):
    """Fetch one student's scripts into their collection folder; returns the manifest.  HostError when the VM
    cannot be reached or its agent cannot collect."""
    paths = script_paths(lab, entry)
    reply = backend.collect_scripts(list(paths.values()))
    if not reply.get("ok"):
        why = str(reply.get("error", ""))[:200]
        if reply.get("code") == "usage":
            why = "its agent cannot collect (re-run the lab playbook on it): " + why
        raise HostError("could not collect the scripts from %s: %s" % (backend.name, why), kind="agent")
    by_path = {item.get("path"): item for item in reply.get("files") or [] if isinstance(item, dict)}
    folder = collection_dir(results_dir, entry.student)
    private_dir(folder)
    files = {}
    for script, path in paths.items():
        item = by_path.get(path) or {"status": "missing", "error": "the agent did not report %s" % path}
        record = {"path": path, "status": item.get("status", "missing")}
        if record["status"] == "ok" and isinstance(item.get("source"), str):
            data = item["source"].encode("utf-8")[:lab.script_cap + 1]
            write_atomic(folder / script, item["source"])
            record.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                          mtime=item.get("mtime") if isinstance(item.get("mtime"), (int, float)) else None)
        else:
            record["status"] = "missing" if record["status"] == "ok" else record["status"]
            record["error"] = str(item.get("error", ""))[:300]
            try:
                (folder / script).unlink()           # a script since removed must not be graded from an old copy
            except FileNotFoundError:
                pass
        files[script] = record
    manifest = {"student": entry.student, "host": backend.name, "collected_at": time.time(),
                "vm_clock": reply.get("collected_at"), "files": files}
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def collect_cohort(lab, entries, results_dir, make_backend, parallel=16, recollect=False, progress=None):
    """Collect every entry not collected yet (all with ``recollect``): {student: manifest | "why not"}."""
    out = {}
    lock = threading.Lock()

    def one(entry):
        manifest = None if recollect else load_manifest(results_dir, entry.student)
        if manifest is not None and not handed_in(manifest):
            manifest = None             # nothing was there: look again (the roster may have been fixed)
        if manifest is None and entry.problem:
            manifest = entry.problem
        elif manifest is None:
            backend = make_backend(entry)
            try:
                backend.connect()
                manifest = collect_one(backend, lab, entry, results_dir)
            except HostError as exc:
                manifest = str(exc)
            except OSError as exc:
                raise GraderError("cannot write the collection of %s in %s: %s"
                                  % (entry.student, results_dir, exc.strerror))
            finally:
                backend.close()
        with lock:
            out[entry.student] = manifest
            if progress:
                progress(entry.student, manifest)

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(entries) or 1))) as pool:
        list(pool.map(one, entries))
    return out


def handed_in(manifest):
    """Did the collection find any script?  None found is the roster's doing far more often than the student's
    (a wrong answers folder or account): not gradable with the fix, never a silent 0."""
    return any(f.get("status") != "missing" for f in manifest["files"].values())


# -- grading what was collected ----------------------------------------------------------------------------------


def late_scripts(manifest, deadline):
    """{script: its mtime} for the collected scripts changed after ``deadline`` (None: no deadline)."""
    if deadline is None:
        return {}
    return {script: rec["mtime"] for script, rec in sorted(manifest["files"].items())
            if rec.get("status") == "ok" and isinstance(rec.get("mtime"), (int, float)) and rec["mtime"] > deadline}


def submission_of(lab, manifest, results_dir, deadline=None, late="flag"):
    """The Submission graded on the pool: the collected scripts (with ``late == "refuse"``, not the late ones)."""
    sub = Submission(student=manifest["student"])
    folder = collection_dir(results_dir, manifest["student"])
    refused = late_scripts(manifest, deadline) if late == "refuse" else {}
    for ex in lab.exercises:
        sub.scripts[ex.id] = ("upload", ex.script)
        rec = manifest["files"].get(ex.script) or {}
        if rec.get("status") != "ok" or ex.script in refused:
            continue
        try:
            data = (folder / ex.script).read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() != rec.get("sha256"):
            sub.problem = ("the collected %s in %s changed after it was collected (its sha256 differs from the "
                           "manifest's): collect again with --recollect" % (ex.script, folder))
        sub.uploads[ex.script] = data
    return sub


def mark_late(result, lab, manifest, deadline, late="flag", penalty=None):
    """Say on each exercise whose script was changed after the deadline that it was (``flag``), or fail it as not
    graded (``refuse``); with ``penalty`` (e.g. "10%/day", grader/late.py) flagged exercises also lose points.
    The result keeps the collection's record (``submitted``)."""
    changed = late_scripts(manifest, deadline)
    by_script = {ex.script: ex.id for ex in lab.exercises}
    result.submitted = {"collected_at": manifest.get("collected_at"), "host": manifest.get("host"),
                        "deadline": deadline, "late": {by_script[s]: t for s, t in changed.items() if s in by_script},
                        "late_policy": late,
                        "sha256": {by_script[s]: r.get("sha256") for s, r in manifest["files"].items()
                                   if s in by_script and r.get("sha256")}}
    for ex in result.exercises:
        script = next((s for s, i in by_script.items() if i == ex.id), None)
        if script not in changed:
            continue
        when = "%s was changed at %s, after the deadline %s" % (script, iso(changed[script]), iso(deadline))
        if late == "refuse":
            ex.passed, ex.score, ex.reason = False, 0.0, "late"
            ex.feedback = when + ": not graded."
        else:
            ex.feedback = ("late: %s.\n%s" % (when, ex.feedback)).strip()
    result.score = sum(e.score for e in result.exercises)
    if penalty and late != "refuse" and deadline is not None:
        from .late import penalize

        penalize(result, result.submitted["late"], deadline, penalty)
    return result


def script_times(backend, lab, entry):
    """Cohort mode (`grade` on each student's own VM) with a deadline: the manifest of the student's scripts as
    their agent reports them now (content hashes and modification times), kept nowhere but in the result."""
    paths = script_paths(lab, entry)
    reply = backend.collect_scripts(list(paths.values()))
    if not reply.get("ok"):
        raise HostError("could not read the scripts' times on %s: %s" % (backend.name, str(reply.get("error"))[:200]),
                        kind="agent")
    by_path = {item.get("path"): item for item in reply.get("files") or [] if isinstance(item, dict)}
    files = {}
    for script, path in paths.items():
        item = by_path.get(path) or {}
        mtime = item.get("mtime")
        files[script] = {"path": path, "status": item.get("status", "missing"),
                         "mtime": mtime if isinstance(mtime, (int, float)) else None,
                         "sha256": hashlib.sha256(item["source"].encode("utf-8")).hexdigest()
                         if isinstance(item.get("source"), str) else None}
    return {"student": entry.student, "host": backend.name, "collected_at": time.time(), "files": files}


def student_deadline(student, deadline, extensions):
    return extensions.get(student, deadline) if extensions else deadline
