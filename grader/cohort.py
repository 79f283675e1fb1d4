"""Grade many students: a bounded pool of workers, a journal, a progress line.

One student's failure (host down, auth refused, agent broken) becomes that student's
"not gradable: why" result; only a failure to WRITE results stops the run, because
grading on without saving would lose work.
"""

import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import grading
from .backend.ssh import SSHBackend
from .errors import GraderError, HostError
from .labspec import expand_home

RETRY_KINDS = {"connection", "unreachable", "busy"}
# Seconds before retry n (1, 2, ...).  After a lost connection the next job on that host also waits
# for the cut-off one to end (grader/backend/ssh.py); "busy" means a job still runs there.
RETRY_PAUSE = {"connection": 3, "unreachable": 3, "busy": 15}


def retry_pause(kind, attempt):
    return RETRY_PAUSE.get(kind, 3) * attempt


class Progress:
    def __init__(self, total, stream=None, quiet=False):
        self.total, self.done, self.stream, self.quiet = total, 0, stream or sys.stderr, quiet
        self.lock = threading.Lock()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def step(self, result):
        with self.lock:
            self.done += 1
            if self.quiet:
                return
            what = ("%g/%g" % (result.score, result.max_score) if result.status == "graded"
                    else "not gradable: %s" % result.error[:80])
            name = "".join(c for c in result.student if c.isprintable())[:40]
            if self.tty:
                bar = "#" * int(30 * self.done / max(self.total, 1))
                self.stream.write("\r[%-30s] %d/%d  %-40s %s\x1b[K" % (bar, self.done, self.total, name, what[:60]))
                if self.done == self.total:
                    self.stream.write("\n")
            else:
                self.stream.write("[%d/%d] %s: %s\n" % (self.done, self.total, name, what))
            self.stream.flush()


def backend_for(entry, options):
    return SSHBackend(entry.host, entry.port, entry.user, entry.key or None, entry.agent,
                      known_hosts=options.get("known_hosts"), replace_host_keys=options.get("replace_host_keys", False),
                      connect_timeout=options.get("connect_timeout", 10), tries=options.get("tries", 3))


def _grade_with_retry(make_backend, lab, student, scripts, uploads, retries, visible_only=False):
    last = None
    for attempt in range(retries + 1):
        backend = make_backend()
        try:
            backend.connect()
            return grading.grade(backend, lab, student, scripts, uploads, visible_only=visible_only)
        except HostError as exc:
            last = exc
            if exc.kind not in RETRY_KINDS or attempt == retries:
                break
            time.sleep(retry_pause(exc.kind, attempt + 1))
        finally:
            backend.close()
    return grading.not_gradable(student, last, host=getattr(make_backend(), "name", ""))


def finished(journal):
    """Students a plain rerun skips: those graded.  A "not gradable" student (VM down, key refused) is retried."""
    return {student: r for student, r in journal.load().items() if r.status == "graded"}


NOT_GRADED_YET = "not graded yet: run `grade` without --student (or with --student %s)"


def cohort_results(journal, first=()):
    """Everyone in the roster and the journal, for the reports: the students named in `first` (roster order) lead,
    the rest of the journal follows.  `grade --student bob` grades bob; the gradebook still lists the whole
    cohort, a roster student with no result yet as "not graded yet" (never recorded, never a grade)."""
    from .grading import StudentResult

    recorded = journal.load()
    order = list(dict.fromkeys(first))
    leading = set(order)
    order += [s for s in recorded if s not in leading]
    return [recorded[s] if s in recorded else
            StudentResult(student=s, status="not_graded", error=NOT_GRADED_YET % s) for s in order]


def cohort_scripts(lab, entry):
    """Cohort mode: the agent reads each answer from the student's own answers folder."""
    answers = entry.answers or expand_home(lab.answers_dir, entry.student_user)
    return {ex.id: ("path", "%s/%s" % (answers.rstrip("/"), ex.script)) for ex in lab.exercises}


def rerun_question(journal, question, result, previous):
    """``--question``: the new run's verdict for that question, every other exercise as the journal had it.  A
    student with no graded result yet gets the whole run; a run that could not grade leaves the graded result as
    it was (said on stderr) rather than replacing a grade by "not gradable"."""
    from .questions import keep_other_questions

    if question is None or previous is None or previous.status != "graded":
        return result
    if result.status != "graded":
        print("bpfhol-grade: %s: %s not re-run (%s); their graded result is kept"
              % ("".join(c for c in result.student if c.isprintable())[:40], question, result.error[:120]),
              file=sys.stderr)
        return None
    return keep_other_questions(previous, result, question)


def grade_roster(lab, entries, journal, parallel=8, force=False, retries=1, options=None, progress=None,
                 question=None, adjust=None):
    """Grade every entry; returns all results (finished earlier ones included, unless forced).  ``question``
    (with force): only that exercise's verdict is replaced.  ``adjust(result, entry)`` amends a graded result
    before it is recorded (a deadline's marks)."""
    options = options or {}
    previous = journal.load() if question else {}
    done = {} if force else finished(journal)
    todo = [e for e in entries if e.student not in done]
    progress = progress or Progress(len(todo), quiet=options.get("quiet", False))
    results = {}
    stop = threading.Event()
    failure = []

    def one(entry):
        if stop.is_set():
            return
        if entry.problem:
            result = grading.not_gradable(entry.student, entry.problem)
        else:
            try:
                result = _grade_with_retry(lambda: backend_for(entry, options), lab, entry.student,
                                           cohort_scripts(lab, entry), {}, retries)
            except Exception as exc:  # noqa: BLE001 - a bug on one student's odd output must not end the cohort
                result = grading.not_gradable(entry.student, "grader error: %s: %s" % (type(exc).__name__, exc),
                                              entry.host)
        result.max_score = lab.max_score
        result.mode = "self-check"
        if adjust is not None and result.status == "graded":
            try:
                adjust(result, entry)
            except Exception as exc:  # noqa: BLE001 - e.g. the VM went away: the grade stands, unmarked
                result.error = ("could not check the deadline: %s" % exc)[:300]
        kept = rerun_question(journal, question, result, previous.get(entry.student))
        if kept is None:
            results[entry.student] = previous[entry.student]
            progress.step(result)
            return
        result = kept
        try:
            journal.record(result, lab)
        except GraderError as exc:
            failure.append(exc)
            stop.set()
            return
        results[entry.student] = result
        progress.step(result)

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(todo) or 1))) as pool:
        list(pool.map(one, todo))
    if failure:
        raise failure[0]
    merged = dict(done)
    merged.update(results)
    order = [e.student for e in entries]
    return [merged[s] for s in order if s in merged]


# Failures a submission itself may cause (a reply the agent could not make, a workload that recorded nothing);
# a VM is retired for one of them only after a canary job (the lab's reference answers) fails on it too.
SUBMISSION_MAY_CAUSE = {"agent", "workload"}


def reference_uploads(lab):
    """The lab's reference answers as a submission's uploads ({} when the lab folder has none)."""
    uploads = {}
    for ex in lab.exercises:
        path = Path(lab.path) / "solutions" / ex.script
        if path.is_file():
            uploads[ex.script] = path.read_bytes()
    return uploads if len(uploads) == len(lab.exercises) else {}


def canary_passes(lab, vm, options):
    """Does this VM grade the lab's reference answers (a result, whatever its score)?  False when it cannot, or
    when the lab has no references to try (then a failure retires the VM, as before)."""
    uploads = reference_uploads(lab)
    if not uploads:
        return False
    backend = backend_for(vm, options)
    try:
        backend.connect()
        scripts = {ex.id: ("upload", ex.script) for ex in lab.exercises}
        return grading.grade(backend, lab, "canary", scripts, uploads).status == "graded"
    except HostError:
        return False
    finally:
        backend.close()


def grade_submissions(lab, submissions, vms, journal, force=False, retries=1, options=None, mode="submissions",
                      adjust=None, question=None):
    """Submissions mode: students' folders graded on instructor VMs, one student per VM at a time
    (every probe sees the whole kernel).  A VM that fails is retired; its student goes back in line.
    ``mode`` is recorded with each result; ``adjust(result)`` amends a graded result before it is recorded
    (grade --pool: the deadline's marks); ``question``: only that exercise's verdict is replaced."""
    options = options or {}
    previous = journal.load() if question else {}
    done = {} if force else finished(journal)
    todo = [s for s in submissions if s.student not in done]
    progress = Progress(len(todo), quiet=options.get("quiet", False))
    work = queue.Queue()
    for sub in todo:
        work.put((sub, 0))
    results, failure = {}, []
    alive = [vm for vm in vms if not vm.problem]
    live_count = [len(alive)]
    lock = threading.Lock()

    def finish(result):
        result.max_score = lab.max_score
        result.mode = mode
        if adjust is not None and result.status == "graded":
            adjust(result)
        kept = rerun_question(journal, question, result, previous.get(result.student))
        if kept is None:
            results[result.student] = previous[result.student]
            progress.step(result)
            return
        journal.record(kept, lab)
        results[result.student] = kept
        progress.step(kept)

    def worker(vm):
        while not failure:
            try:
                sub, tries = work.get_nowait()
            except queue.Empty:
                return
            try:
                if sub.problem:
                    finish(grading.not_gradable(sub.student, sub.problem))
                    continue
                backend = backend_for(vm, options)
                try:
                    backend.connect()
                    result = grading.grade(backend, lab, sub.student, sub.scripts, sub.uploads)
                except HostError as exc:
                    if exc.kind in SUBMISSION_MAY_CAUSE and canary_passes(lab, vm, options):
                        # The VM grades the references: this submission, not the VM, broke the run.  The VM
                        # stays in the pool (a student must not be able to retire it), the student is told.
                        finish(grading.not_gradable(sub.student, "this submission stopped the grading run on a lab "
                                                    "VM that grades the lab's reference answers: %s" % exc, vm.host))
                        continue
                    if exc.kind in RETRY_KINDS | {"agent", "host_key", "auth", "workload"}:
                        retire = exc.kind not in ("connection", "busy") or tries >= retries
                        if tries < retries + 1 and (live_count[0] > 1 or not retire):
                            work.put((sub, tries + 1))
                        else:
                            finish(grading.not_gradable(sub.student, "no lab VM could grade it: %s" % exc, vm.host))
                        if retire:
                            with lock:
                                live_count[0] -= 1
                            return
                        time.sleep(retry_pause(exc.kind, 1))   # this VM rests; its next job also waits
                        continue                               # for the cut-off one (backend/ssh.py)
                    result = grading.not_gradable(sub.student, exc, backend.name)
                except Exception as exc:  # noqa: BLE001
                    result = grading.not_gradable(sub.student, "grader error: %s: %s" % (type(exc).__name__, exc))
                finally:
                    backend.close()
                finish(result)
            except GraderError as exc:
                failure.append(exc)
                return

    threads = [threading.Thread(target=worker, args=(vm,), daemon=True) for vm in alive]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failure:
        raise failure[0]
    while not work.empty():
        sub, _ = work.get_nowait()
        finish(grading.not_gradable(sub.student, "no lab VM was reachable to grade it"))
    merged = dict(done)
    merged.update(results)
    return [merged[s.student] for s in submissions if s.student in merged]
