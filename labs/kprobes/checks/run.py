"""What kprobeme did in one grading run, read from its truth log's records (grader/truth.py keeps them as
they came, for any lab; this module is the kprobes lab's reading of them).

kprobeme logs (labs/kprobes/workload/kprobeme.c) a "start" record (the lab file, the leak period, the
spare descriptors opened before the loop, its jobs and which of them leak this run), then per open an
"open" record (seq, fd, path, job), and a "close" or a "leak" record for that descriptor.
"""

import re
from dataclasses import dataclass, field


@dataclass
class KprobemeRun:
    file: str = ""
    leak_every: int = 0
    spare_fds: int = 0
    opens: list = field(default_factory=list)      # (seq, fd, path)
    closes: list = field(default_factory=list)     # (seq, fd)
    leaks: list = field(default_factory=list)      # (seq, fd)
    jobs: list = field(default_factory=list)       # kprobeme's job functions (the names a user stack shows)
    leaky: list = field(default_factory=list)      # the jobs that leak in this run
    leak_jobs: dict = field(default_factory=dict)  # leaked fd -> the job whose open leaked it
    open_jobs: list = field(default_factory=list)  # the job of each open, in order

    @property
    def opened_fds(self):
        return [fd for _, fd, _ in self.opens]

    @property
    def leaked_fds(self):
        return [fd for _, fd in self.leaks]

    @property
    def closed_fds(self):
        return [fd for _, fd in self.closes]

    @property
    def paths(self):
        return {path for _, _, path in self.opens}


def _names(value):
    """A list of short function names from the log; anything else (a forged string, numbers) is none."""
    if not isinstance(value, list):
        return []
    return [v for v in value[:64] if isinstance(v, str) and re.fullmatch(r"[A-Za-z_]\w{0,63}", v)]


def _int(value):
    return int(value or 0)


def read_run(truth):
    """The run's opens, closes and leaks; a record with a field of the wrong type is skipped (the log comes from
    the student's VM)."""
    run = KprobemeRun()
    start = truth.start or {}
    try:
        run.file = str(start.get("file", ""))
        run.leak_every = _int(start.get("leak_every"))
        run.spare_fds = _int(start.get("spare_fds"))
    except (TypeError, ValueError):
        pass
    run.jobs, run.leaky = _names(start.get("jobs")), _names(start.get("leaky"))
    for rec in truth.events:
        ev = rec.get("event")
        try:
            if ev == "open":
                opened = (_int(rec.get("seq")), int(rec["fd"]), str(rec.get("path", "")))
                run.opens.append(opened)
                run.open_jobs.append(str(rec.get("job", "")))
            elif ev == "close":
                run.closes.append((_int(rec.get("seq")), int(rec["fd"])))
            elif ev == "leak":
                run.leaks.append((_int(rec.get("seq")), int(rec["fd"])))
                if _names([rec.get("job")]):
                    run.leak_jobs[int(rec["fd"])] = rec["job"]
        except (KeyError, TypeError, ValueError):
            continue
    return run


CACHE_KEY = "kprobeme"


def run_of(truth):
    """read_run, once per Truth (every check of a student reads the same run)."""
    cached = truth.derived.get(CACHE_KEY)
    if cached is None:
        cached = truth.derived[CACHE_KEY] = read_run(truth)
    return cached
