"""Check about user stacks: which of the workload's functions leaked each descriptor (q4).

The workload's opens are made by its jobs (in the kprobes lab: load_config, refresh_cache, ...).  In each grading run two
jobs, drawn from --seed, are the leaky ones, and each leaking open is made by one of the two, drawn
again per open; the other jobs always close.  The truth log names the job of every open.

leak_sites (q4) accepts a map keyed by descriptor (or by a tuple holding it, e.g. @[pid, fd]) whose
keys are exactly the run's leaked descriptors and whose value for each descriptor names exactly one
of the workload's jobs: the one whose open returned that descriptor.  What a correct script prints:
the user stack taken when the open returned (ustack, any mode or depth that reaches the job's frame),
kept by descriptor and deleted on close.  The value is read as text, so a job name found another
way (a uprobe on the job, its ``func``) passes too.

Why a guess cannot pass: the keys must be this run's leaked set (as in q3, see descriptors.py), and
each key must carry its own job, drawn per open: naming one job for every descriptor, or the same
two, matches only when every leak of the run came from that job (tests/unit/test_guessing.py
measures it with the true descriptors handed to the guesser).  A value that names several jobs
names none.
"""

import re

from grader.checks import Verdict, check
from .run import run_of
from .descriptors import fd_tables

# Frames of a kernel stack (kstack) that any open shows, on x86_64 and arm64.
KERNEL_FRAMES = re.compile(r"\b(do_sys_openat2|do_syscall_64|entry_SYSCALL_64\w*|el0_svc\w*|"
                           r"invoke_syscall|__x64_sys_\w+|__arm64_sys_\w+)\b")
# The libc frame that makes the workload's system call: a stack that holds it but no job was cut short.
LIBC_FRAME = re.compile(r"(?<![A-Za-z0-9_])(syscall|open64|__libc_open64|__open64_nocancel)\+")
ADDRESS_ONLY = re.compile(r"^\s*(0x)?[0-9a-f]{6,}\s*$", re.I)


def jobs_named(text, jobs):
    """The job names that appear in ``text`` as whole words (a frame "refresh_cache+15", a string)."""
    return {job for job in jobs if re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(job), text)}


@check("leak_sites")
def leak_sites(output, truth, params):
    run = run_of(truth)
    leaked = set(run.leaked_fds)
    if not run.opens or not run.jobs or set(run.leak_jobs) != leaked:
        return Verdict(False, "no_truth", "the workload's log does not say which job made each open "
                       "(a lab VM problem: re-run the lab playbook)")
    if not leaked:
        return Verdict(False, "no_truth", "the workload leaked nothing during the run (a lab VM problem)")

    texts = {where: {fd: str(value) for fd, value in table.items()} for where, table in fd_tables(output, truth).items()}
    naming = {where: table for where, table in texts.items()
              if any(jobs_named(v, run.jobs) for v in table.values())}
    for (name, _), table in naming.items():
        if set(table) == leaked and all(jobs_named(table[fd], run.jobs) == {run.leak_jobs[fd]} for fd in leaked):
            return Verdict(True, "ok", "map %s gives each of the %d leaked descriptors the function that opened it"
                           % (name, len(leaked)))

    if not naming:
        values = [v for table in texts.values() for v in table.values()]
        if any(KERNEL_FRAMES.search(v) for v in values):
            return Verdict(False, "kernel_stack", "your map holds kernel stacks: they end in the system call, "
                           "not in %s's own functions" % truth.comm)
        if any(LIBC_FRAME.search(v) for v in values):
            return Verdict(False, "short_stack", "your user stacks stop in libc, before %s's own functions"
                           % truth.comm)
        if any(v.strip() and all(ADDRESS_ONLY.match(f) or "[unknown]" in f for f in v.strip().splitlines())
               for v in values):
            return Verdict(False, "unresolved", "your stacks are bare addresses, without function names")
        return Verdict(False, "no_stacks", "no map keyed by descriptor names any of %s's functions" % truth.comm)

    closed_only = set(run.opened_fds) - leaked
    for table in naming.values():
        if leaked < set(table) and set(table) & closed_only:
            return Verdict(False, "not_deleted", "your map still holds descriptors that %s closed" % truth.comm)
    for table in naming.values():
        if set(table) == leaked:
            wrong = sum(1 for fd in leaked if jobs_named(table[fd], run.jobs) != {run.leak_jobs[fd]})
            return Verdict(False, "wrong_function", "%d of the %d leaked descriptors are given a function that "
                           "did not open them (or several functions)" % (wrong, len(leaked)))
    return Verdict(False, "wrong_fds", "the descriptors in your map are not the ones %s leaked" % truth.comm)
