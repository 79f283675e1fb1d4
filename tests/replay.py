"""A stand-in lab host for report tests: answers a grading job with the reply a real agent would send for a
simulated kprobeme run (tests/simulate.py), so results, evidence and reports are made by the real grader code."""

import random

import simulate
from simulate import printf


class ReplayBackend:
    """Answers the job with a reply built from a simulated run: outputs[exercise id](truth) is that script's stdout."""
    name = "replay"

    def __init__(self, outputs, source="kprobe:x {}", stderr=""):
        self.outputs = outputs
        self.source = source
        self.stderr = stderr

    def run_agent_job(self, job, uploads, timeout):
        args = job["workload"]["args"]
        truth = simulate.truth_for(args, int(args.get("spare-fds", 0)), 4242, job["workload"]["decoy_file"])
        scripts = [{"name": s["name"], "status": "ran", "exit_code": 0, "attached": True, "source": self.source,
                    "stdout": self.outputs[s["name"]](truth), "stderr": self.stderr,
                    "path": "/run/bpfhol-agent-x/s0.bt"}
                   for s in job["scripts"]]
        return {"ok": True, "agent_version": job["version"], "scripts": scripts, "facts": {"tracefs": True},
                "workload": {"truth": simulate.truth_log(truth), "decoy": job["workload"]["decoy_file"]}}


HONEST = {
    "q1": lambda t: printf("kprobeme opens " + t.file),
    "q2": lambda t: printf(*["fd %d" % fd for fd in t.opened_fds]),
    "q3": lambda t: printf("opens %d closes %d" % (len(t.opens), len(t.closes))),
    "q4": simulate.q4_map,
}

WRONG = {
    "q1": lambda t: printf("/proc/uptime"),
    "q2": lambda t: printf("fd 3"),
    "q3": lambda t: printf("opens 12 closes 10"),
    "q4": lambda t: printf("@opened_by[5]: job_a"),
}


def cohort(journal, lab, n, seed=0, not_gradable_every=17):
    """Grade n simulated students into `journal`: a mix of right and wrong answers per question, and every
    `not_gradable_every`-th student not gradable (as an unreachable VM is recorded)."""
    from grader import grading

    rng = random.Random(seed)
    scripts = {ex.id: ("upload", ex.script) for ex in lab.exercises}
    names = []
    for i in range(n):
        student = "student%03d" % i
        names.append(student)
        if not_gradable_every and i % not_gradable_every == 3:
            journal.record(grading.not_gradable(student, "host unreachable after 3 tries: bpfhol-grader@10.0.%d.%d:22 "
                                                "(connection refused): start the VM (vagrant up)" % (i // 250, i % 250),
                                                "10.0.0.%d" % i), lab)
            continue
        outputs = {q: (HONEST if rng.random() < 0.4 + 0.15 * k else WRONG)[q] for k, q in enumerate(HONEST)}
        result = grading.grade(ReplayBackend(outputs), lab, student, scripts, rng=random.Random(student))
        result.max_score = lab.max_score
        journal.record(result, lab)
    return names
