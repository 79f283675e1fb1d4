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
from dataclasses import fields

from grader.labspec import load_lab
from grader.truth import Truth, parse_truth


def simulated_run(lab, rng, pid=None):
    """(workload parameters, Truth) of one simulated grading run of ``lab``."""
    run = lab.workload_run(rng)
    args = run["args"]
    pid = pid if pid is not None else rng.randint(300, 4000000)
    return run, truth_for(args, int(args.get("spare-fds", 0)), pid, run.get("decoy_file"))


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


KPROBES = load_lab("kprobes").checks_module     # the lab's checks package (labs/kprobes/checks/)


class SimulatedTruth(Truth):
    """A Truth as the grader builds it (records in ``events``), that also answers kprobeme's fields (t.opens,
    t.leaked_fds, t.file, ...) from the lab's reading of the run, for tests that write answers from them."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(KPROBES.run.run_of(self), name)


def truth_for(args, spare_fds, pid, decoy=None):
    """The run kprobeme would make with these arguments: its truth log's records, and (so that 21,000 simulated
    runs cost seconds, not a parse each) the lab's reading of them, which test_grading_rules checks is exactly
    what labs/kprobes/checks/run.py reads from those records."""
    path, count, every = args["file"], int(args["count"]), int(args["leak-every"])
    rng, leaky, steady = job_plan(int(args.get("seed", 0)))
    run = KPROBES.run.KprobemeRun(file=path, leak_every=every, spare_fds=spare_fds, jobs=list(JOBS), leaky=leaky)
    start = {"event": "start", "pid": pid, "file": path, "leak_every": every, "spare_fds": spare_fds, "hold": True,
             "jobs": list(JOBS), "leaky": leaky}
    events = [start, {"event": "released"}]
    open_fds = set(range(4 + spare_fds))
    for seq in range(1, count + 1):
        fd = 0
        while fd in open_fds:       # the kernel hands out the lowest free descriptor
            fd += 1
        open_fds.add(fd)
        run.opens.append((seq, fd, path))
        leak = bool(every and seq % every == 0)
        job = leaky[rng.below(2)] if leak else steady[rng.below(len(steady))]
        run.open_jobs.append(job)
        events.append({"event": "open", "seq": seq, "job": job, "path": path, "fd": fd})
        events.append({"event": "leak" if leak else "close", "seq": seq, "job": job, "fd": fd})
        if leak:
            run.leaks.append((seq, fd))
            run.leak_jobs[fd] = job
        else:
            open_fds.discard(fd)
            run.closes.append((seq, fd))
    events.append({"event": "exit", "opens": len(run.opens), "closes": len(run.closes), "leaks": len(run.leaks)})
    truth = SimulatedTruth(comm="kprobeme", pid=pid, released=True, exited=True, decoys=[decoy] if decoy else [],
                           start=start, events=events)
    truth.derived[KPROBES.run.CACHE_KEY] = run
    return truth


def read_truth(lines):
    """A real truth log (a reply's, kprobeme's own file) read as the grader reads it, answering kprobeme's
    fields too: for tests that compare what a real run printed with what it did."""
    truth = parse_truth(lines)
    return SimulatedTruth(**{f.name: getattr(truth, f.name) for f in fields(Truth) if f.name != "derived"})


def truth_log(truth):
    """The truth log kprobeme would write for this run (JSON lines; for tests of the parser)."""
    return [json.dumps(rec) for rec in truth.events]


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


__all__ = ["Truth", "SimulatedTruth", "KPROBES", "simulated_run", "truth_for", "read_truth", "truth_log", "printf", "map_", "ustack", "q4_map", "runs", "JOBS"]


def in_course_variant(truth, names):
    """The same run as a course variant's workload makes it (grader/variants.py): its records and comm with the
    course's names, read as the grader reads a real log (so nothing of the canonical run is carried over)."""
    from grader.variants import rename

    renamed = read_truth([rename(line, names) for line in truth_log(truth)])
    renamed.comm = rename(truth.comm, names)
    renamed.decoys = list(truth.decoys)
    return renamed
