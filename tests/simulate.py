"""Simulated grading runs: what kprobeme does under the agent for one draw of the lab's randomization.

Faithful to labs/kprobes/workload/kprobeme.c under grader/agent.py: descriptors 0-2 are the standard
streams, 3 is the truth log, then --spare-fds descriptors, then the loop: COUNT opens, each taking the
lowest free descriptor, every LEAK_EVERY-th one leaked, the others closed.  Used by the property tests
against guessing (tests/unit/test_guessing.py) and checked against real kprobeme in test_kprobeme.py.
"""

import json
import random

from grader.truth import Truth


def simulated_run(lab, rng, pid=None):
    """(workload parameters, Truth) of one simulated grading run of ``lab``."""
    run = lab.workload_run(rng)
    args = run["args"]
    pid = pid if pid is not None else rng.randint(300, 4000000)
    return run, truth_for(args, run["fd_offset"], pid, run.get("decoy_file"))


def truth_for(args, spare_fds, pid, decoy=None):
    path, count, every = args["file"], int(args["count"]), int(args["leak-every"])
    truth = Truth(file=path, leak_every=every, pid=pid, spare_fds=spare_fds, released=True,
                  decoys=[decoy] if decoy else [])
    open_fds = set(range(4 + spare_fds))
    for seq in range(1, count + 1):
        fd = 0
        while fd in open_fds:       # the kernel hands out the lowest free descriptor
            fd += 1
        open_fds.add(fd)
        truth.opens.append((seq, fd, path))
        if every and seq % every == 0:
            truth.leaks.append((seq, fd))
        else:
            open_fds.discard(fd)
            truth.closes.append((seq, fd))
    truth.exited = True
    return truth


def truth_log(truth):
    """The truth log kprobeme would write for this Truth (JSON lines; for tests of the parser)."""
    lines = [{"event": "start", "pid": truth.pid, "file": truth.file, "leak_every": truth.leak_every,
              "spare_fds": truth.spare_fds, "hold": True}, {"event": "released"}]
    closes, leaks = dict(truth.closes), dict(truth.leaks)
    for seq, fd, path in truth.opens:
        lines.append({"event": "open", "seq": seq, "path": path, "fd": fd})
        lines.append({"event": "leak" if seq in leaks else "close", "seq": seq, "fd": fd})
    lines.append({"event": "exit", "opens": len(truth.opens), "closes": len(closes), "leaks": len(leaks)})
    return [json.dumps(rec) for rec in lines]


def printf(*lines):
    """bpftrace -f json output of printf lines."""
    return "".join(json.dumps({"type": "printf", "data": line + "\n"}) + "\n" for line in lines)


def map_(name, table):
    """bpftrace -f json output of a printed map (a dict) or a scalar map (a number)."""
    data = {name: {str(k): v for k, v in table.items()}} if isinstance(table, dict) else {name: table}
    return json.dumps({"type": "map", "data": data}) + "\n"


def runs(lab, n, seed=0):
    rng = random.Random(seed)
    return [simulated_run(lab, rng) for _ in range(n)]


__all__ = ["Truth", "simulated_run", "truth_for", "truth_log", "printf", "map_", "runs"]
