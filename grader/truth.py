"""Ground truth: what the graded workload really did, from its JSON-lines log (see docs/design.md).

Every record is kept as it came (``events``, ``start``) for any lab's checks; the named fields below are
the kprobes lab's records (its workload's opens, closes and leaks), read here because several checks share them.
A lab whose workload logs other events reads ``events`` in its own checks module (labs/<lab>/checks.py)."""

import json
import re
from dataclasses import dataclass, field


@dataclass
class Truth:
    file: str = ""
    comm: str = ""                               # the workload's process name (from the lab spec)
    leak_every: int = 0
    pid: int = 0
    spare_fds: int = 0
    released: bool = False                       # the workload ran its loop after the attach barrier
    opens: list = field(default_factory=list)    # (seq, fd, path)
    closes: list = field(default_factory=list)   # (seq, fd)
    leaks: list = field(default_factory=list)    # (seq, fd)
    exited: bool = False
    decoys: list = field(default_factory=list)   # files another process opened during the run
    jobs: list = field(default_factory=list)     # the workload's job functions (the names a user stack shows)
    leaky: list = field(default_factory=list)    # the jobs that leak in this run
    leak_jobs: dict = field(default_factory=dict)  # leaked fd -> the job whose open leaked it
    open_jobs: list = field(default_factory=list)  # the job of each open, in order
    start: dict = field(default_factory=dict)    # the workload's "start" record, as logged
    events: list = field(default_factory=list)   # every record (dicts), in order, for any lab's checks

    def of(self, event):
        """The records of one kind ("order", "open", ...), in order."""
        return [rec for rec in self.events if rec.get("event") == event]

    @property
    def opened_fds(self):
        return [fd for _, fd, _ in self.opens]

    @property
    def leaked_fds(self):
        return [fd for _, fd in self.leaks]

    @property
    def paths(self):
        return {path for _, _, path in self.opens}

    @property
    def closed_fds(self):
        return [fd for _, fd in self.closes]


MAX_EVENTS = 200000     # the agent caps the log it returns; this bounds a forged reply's records too


def _names(value):
    """A list of short function names from the log; anything else (a forged string, numbers) is none."""
    if not isinstance(value, list):
        return []
    return [v for v in value[:64] if isinstance(v, str) and re.fullmatch(r"[A-Za-z_]\w{0,63}", v)]


def parse_truth(lines):
    truth = Truth()
    for line in lines or []:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        ev = rec.get("event")
        if len(truth.events) < MAX_EVENTS:
            truth.events.append(rec)
        try:
            if ev == "start":
                truth.start = rec
                truth.file = str(rec.get("file", ""))
                truth.leak_every = int(rec.get("leak_every") or 0)
                truth.pid = int(rec.get("pid") or 0)
                truth.spare_fds = int(rec.get("spare_fds") or 0)
                truth.jobs = _names(rec.get("jobs"))
                truth.leaky = _names(rec.get("leaky"))
            elif ev == "released":
                truth.released = True
            elif ev == "open":
                truth.opens.append((int(rec.get("seq", 0)), int(rec["fd"]), str(rec.get("path", ""))))
                truth.open_jobs.append(str(rec.get("job", "")))
            elif ev == "close":
                truth.closes.append((int(rec.get("seq", 0)), int(rec["fd"])))
            elif ev == "leak":
                truth.leaks.append((int(rec.get("seq", 0)), int(rec["fd"])))
                if _names([rec.get("job")]):
                    truth.leak_jobs[int(rec["fd"])] = rec["job"]
            elif ev == "exit":
                truth.exited = True
        except (KeyError, TypeError, ValueError):
            continue
    return truth
