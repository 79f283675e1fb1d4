"""Ground truth: what the graded workload really did, from its JSON-lines log (see docs/design.md).

The grader core knows only what every lab's log has: records with an "event" name, one "start" record (the
workload's pid and its drawn parameters), "released" once the attach barrier let it run, "exit" at its end.
Every record is kept as it came (``events``); what a lab's events mean is read by that lab's checks module
(labs/kprobes/checks/run.py, labs/uprobes/checks.py), which may cache what it derives in ``derived``."""

import json
from dataclasses import dataclass, field


@dataclass
class Truth:
    comm: str = ""                               # the workload's process name (from the lab spec)
    pid: int = 0
    released: bool = False                       # the workload ran its loop after the attach barrier
    exited: bool = False
    decoys: list = field(default_factory=list)   # files another process opened during the run (workload.file)
    start: dict = field(default_factory=dict)    # the workload's "start" record, as logged
    events: list = field(default_factory=list)   # every record (dicts), in order
    derived: dict = field(default_factory=dict, repr=False, compare=False)   # a lab's checks' cache

    def of(self, event):
        """The records of one kind ("order", "open", ...), in order."""
        return [rec for rec in self.events if rec.get("event") == event]


MAX_EVENTS = 200000     # the agent caps the log it returns; this bounds a forged reply's records too


def parse_truth(lines):
    truth = Truth()
    for line in lines or []:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or len(truth.events) >= MAX_EVENTS:
            continue
        truth.events.append(rec)
        ev = rec.get("event")
        if ev == "start" and not truth.start:
            truth.start = rec
            try:
                truth.pid = int(rec.get("pid") or 0)
            except (TypeError, ValueError):
                truth.pid = 0
        elif ev == "released":
            truth.released = True
        elif ev == "exit":
            truth.exited = True
    return truth
