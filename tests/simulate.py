"""Simulated grading runs: what kprobeme does under the agent for one draw of the lab's randomization.

Faithful to labs/kprobes/workload/kprobeme.c under grader/agent.py: descriptors 0-2 are the standard
streams, 3 is the truth log, then --spare-fds descriptors, then the loop: COUNT opens, each taking the
lowest free descriptor, every LEAK_EVERY-th one leaked, the others closed.  Each open is made by one of
kprobeme's jobs, drawn from --seed with kprobeme's own generator (splitmix64): two leaky jobs, one of
them for each leaking open, one of the four others for each open that is closed.  Used by the property tests
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


JOBS = ["load_config", "refresh_cache", "poll_status", "read_stats", "check_quota", "update_index"]
MASK = (1 << 64) - 1


class SplitMix64:
    """kprobeme's generator (rng_next/rng_below in kprobeme.c), bit for bit."""

    def __init__(self, seed):
        self.state = seed & MASK

    def below(self, n):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return (z ^ (z >> 31)) % n


def job_plan(seed):
    """(generator, leaky jobs, steady jobs) as kprobeme draws them from its seed."""
    rng = SplitMix64(seed)
    first = rng.below(len(JOBS))
    second = rng.below(len(JOBS) - 1)
    second += second >= first
    leaky = [JOBS[first], JOBS[second]]
    return rng, leaky, [j for j in JOBS if j not in leaky]


def truth_for(args, spare_fds, pid, decoy=None):
    path, count, every = args["file"], int(args["count"]), int(args["leak-every"])
    rng, leaky, steady = job_plan(int(args.get("seed", 0)))
    truth = Truth(file=path, comm="kprobeme", leak_every=every, pid=pid, spare_fds=spare_fds, released=True,
                  decoys=[decoy] if decoy else [], jobs=list(JOBS), leaky=leaky)
    open_fds = set(range(4 + spare_fds))
    for seq in range(1, count + 1):
        fd = 0
        while fd in open_fds:       # the kernel hands out the lowest free descriptor
            fd += 1
        open_fds.add(fd)
        truth.opens.append((seq, fd, path))
        leak = bool(every and seq % every == 0)
        job = leaky[rng.below(2)] if leak else steady[rng.below(len(steady))]
        truth.open_jobs.append(job)
        if leak:
            truth.leaks.append((seq, fd))
            truth.leak_jobs[fd] = job
        else:
            open_fds.discard(fd)
            truth.closes.append((seq, fd))
    truth.exited = True
    return truth


def truth_log(truth):
    """The truth log kprobeme would write for this Truth (JSON lines; for tests of the parser)."""
    lines = [{"event": "start", "pid": truth.pid, "file": truth.file, "leak_every": truth.leak_every,
              "spare_fds": truth.spare_fds, "hold": True, "jobs": truth.jobs, "leaky": truth.leaky},
             {"event": "released"}]
    closes, leaks = dict(truth.closes), dict(truth.leaks)
    for (seq, fd, path), job in zip(truth.opens, truth.open_jobs):
        lines.append({"event": "open", "seq": seq, "job": job, "path": path, "fd": fd})
        lines.append({"event": "leak" if seq in leaks else "close", "seq": seq, "job": job, "fd": fd})
    lines.append({"event": "exit", "opens": len(truth.opens), "closes": len(closes), "leaks": len(leaks)})
    return [json.dumps(rec) for rec in lines]


def printf(*lines):
    """bpftrace -f json output of printf lines."""
    return "".join(json.dumps({"type": "printf", "data": line + "\n"}) + "\n" for line in lines)


def map_(name, table):
    """bpftrace -f json output of a printed map (a dict) or a scalar map (a number)."""
    data = {name: {str(k): v for k, v in table.items()}} if isinstance(table, dict) else {name: table}
    return json.dumps({"type": "map", "data": data}) + "\n"


def ustack(job):
    """A user stack as bpftrace prints it for an open made by ``job`` (frames as recorded on the lab VMs)."""
    return "\n        syscall+25\n        %s+15\n        main+3075\n        0x7f706694424a\n" % job


def q4_map(truth, name="@opened_by"):
    """The q4 reference answer for this run: each leaked descriptor with the stack of its open."""
    return map_(name, {fd: ustack(job) for fd, job in truth.leak_jobs.items()})


def runs(lab, n, seed=0):
    rng = random.Random(seed)
    return [simulated_run(lab, rng) for _ in range(n)]


__all__ = ["Truth", "simulated_run", "truth_for", "truth_log", "printf", "map_", "ustack", "q4_map", "runs", "JOBS"]
