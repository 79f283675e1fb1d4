"""The property test against guessing: a score must come from tracing.

Each strategy below plays a student who does not trace kprobeme but prints something that does
not depend on the run: the best constant, every number in a range (per line, per second, at END),
every descriptor on every line, many guesses at once, or last run's correct answer.  Each is judged
by the real checks over RUNS simulated grading runs drawn exactly like the lab's randomization
(labs/kprobes/lab.yaml through Lab.workload_run; tests/simulate.py), and must pass at most 1 % of
them.  The honest answers, computed from each run's truth, must pass every run.

The measured rates are printed (pytest -s); the README's "How grading stays honest" quotes them.
"""

import json
import random
from collections import Counter

import pytest

import simulate
from simulate import map_, printf
from grader import bpftrace_output
from grader.labspec import load_lab

RUNS = 1000
LIMIT = 0.01
LAB = load_lab("kprobes")
EX = {ex.id: ex for ex in LAB.exercises}
SIMULATED = simulate.runs(LAB, RUNS, seed=20261126)
FD_RANGE = range(0, 340)          # every descriptor number a guesser could think of (spare fds <= 127, opens <= 201)




def lhist(name, counts):
    buckets = [{"min": k, "max": k, "count": c} for k, c in sorted(counts.items())]
    return json.dumps({"type": "hist", "data": {name: buckets}}) + "\n"


def pass_rate(ex_id, output_of):
    """Share of the simulated runs in which ``output_of(i, truth)`` passes exercise ``ex_id``."""
    ex = EX[ex_id]
    check = LAB.checks[ex.check]
    cache = {}
    passed = 0
    for i, (_, truth) in enumerate(SIMULATED):
        text = output_of(i, truth)
        if text not in cache:
            cache[text] = bpftrace_output.parse(text)
        passed += check(cache[text], truth, ex.params).passed
    return passed / len(SIMULATED)


def constant(text):
    return lambda i, truth: text


def previous(answer):
    """Last run's correct answer, handed in for this run."""
    return lambda i, truth: answer(SIMULATED[i - 1][1])


# The guesser's best constants are learnt from OTHER runs than the ones judged (picking them from the
# judged runs would overfit: any value seen twice there would look twice as likely as it is).
TRAINING = simulate.runs(LAB, 20000, seed=7)


def most_common(key, n):
    """The n most frequent values of key(truth) over the training runs: the best constants to guess."""
    return [value for value, _ in Counter(key(t) for _, t in TRAINING).most_common(n)]


# --- honest answers (what a tracing script prints), used for "previous run" and as controls -----------

def q1_answer(t):
    return printf("kprobeme pid %d opens %s" % (t.pid, t.file))


def q2_lines(t):
    return printf(*["open %s -> fd %d" % (t.file, fd) for fd in t.opened_fds])


def q2_map(t):
    return map_("@fds", dict(Counter(t.opened_fds)))


def q3_map(t):
    return map_("@open", {fd: 1 for fd in t.leaked_fds}) + map_("@opens", len(t.opens)) + map_("@closes", len(t.closes))


def q3_counts(t):
    return printf("opens %d closes %d" % (len(t.opens), len(t.closes)))


def q3_lines(t):
    return printf(*["leaked fd=%d" % fd for fd in t.leaked_fds])


q4_map = simulate.q4_map
JOBS = simulate.JOBS


def stacks(fds, jobs):
    """A q4 map giving descriptor fds[k] a stack through jobs[k] (a name, or a list of names in one stack)."""
    return map_("@opened_by", {fd: "".join(simulate.ustack(j) for j in ([job] if isinstance(job, str) else job))
                               for fd, job in zip(fds, jobs)})


@pytest.mark.parametrize("ex_id,answer", [
    ("q1", q1_answer), ("q2", q2_lines), ("q2", q2_map), ("q3", q3_map), ("q3", q3_counts), ("q3", q3_lines),
    ("q4", q4_map),
])
def test_honest_answers_pass_every_run(ex_id, answer):
    assert pass_rate(ex_id, lambda i, t: answer(t)) == 1.0


# --- the cheaters --------------------------------------------------------------------------------------

def _seq(t):
    return tuple(t.opened_fds)


def _leaked(t):
    return tuple(t.leaked_fds)


def _pair(t):
    return len(t.opens), len(t.closes)


STRATEGIES = {
    "q1": {
        "the default file": constant(printf("kprobeme opens /proc/uptime")),
        "last run's path": previous(q1_answer),
        "every lab-looking path": constant(printf(*["/run/bpfhol-lab/%016x/notes-%06x.dat" % (k, k)
                                                    for k in range(200)])),
    },
    "q2": {
        "best constant sequence (lines)": lambda i, t: printf(*["fd %d" % fd for fd in BEST["seq"]]),
        "best constant sequence (map)": lambda i, t: map_("@fds", dict(Counter(BEST["seq"]))),
        "every fd, one per line": constant(printf(*["fd %d" % fd for fd in FD_RANGE])),
        "every fd on every line, each second": constant(printf(*[" ".join(map(str, FD_RANGE))] * 12)),
        "every fd on every line, 66 lines": constant(printf(*["fd " + " ".join(map(str, FD_RANGE))] * 66)),
        "every fd in a map": constant(map_("@fds", {fd: 1 for fd in FD_RANGE})),
        "every fd in an lhist": constant(lhist("@fd", {fd: 1 for fd in FD_RANGE})),
        "four guessed maps": lambda i, t: "".join(map_("@g%d" % k, dict(Counter(s))) for k, s in
                                                  enumerate(BEST["seqs"][:4])),
        "many guessed sequences (lines)": lambda i, t: "".join(printf(*["try%d fd %d" % (k, fd) for fd in s])
                                                               for k, s in enumerate(BEST["seqs"][:6])),
        "last run's lines": previous(q2_lines),
        "last run's map": previous(q2_map),
    },
    "q3": {
        "best constant leak set (map)": lambda i, t: map_("@open", {fd: 1 for fd in BEST["leaked"]}),
        "four best leak sets (maps)": lambda i, t: "".join(map_("@g%d" % k, {fd: 1 for fd in s})
                                                           for k, s in enumerate(BEST["leakeds"][:4])),
        "best constant leak set (lines)": lambda i, t: printf(*["leaked fd %d" % fd for fd in BEST["leaked"]]),
        "best constant counts": lambda i, t: printf("opens %d closes %d" % BEST["pair"]),
        "best constant counts (maps)": lambda i, t: map_("@opens", BEST["pair"][0]) + map_("@closes", BEST["pair"][1]),
        "many count lines (the last one counts)": lambda i, t: printf(*["opens %d closes %d" % p
                                                                        for p in BEST["pairs"][:50]]),
        "every number at END": constant(printf(" ".join(map(str, FD_RANGE)))),
        "every number as leaked": constant(printf("leaked: " + " ".join(map(str, FD_RANGE)))),
        "a leak line per number": constant(printf(*["leaked fd %d" % fd for fd in FD_RANGE])),
        "every fd in the map": constant(map_("@open", {fd: 1 for fd in FD_RANGE})),
        "all forms at once": lambda i, t: ("".join(map_("@g%d" % k, {fd: 1 for fd in s})
                                                   for k, s in enumerate(BEST["leakeds"][:4]))
                                           + printf("leaked: " + " ".join(map(str, BEST["leaked"])),
                                                    "opens %d closes %d" % BEST["pair"])),
        "last run's map": previous(q3_map),
        "last run's counts": previous(q3_counts),
        # not a guess but a wrong method whose output depends on the run: it never sees a close
        "every descriptor opened (no closes seen)": lambda i, t: map_("@open", {fd: 1 for fd in t.opened_fds}),
    },
    # q4's guessers are handed this run's TRUE leaked descriptors (as if q3 were traced) and guess only
    # which function leaked each: the per-open draw of the leaky job is what they must beat.
    "q4": {
        "true fds, one function for all": lambda i, t: stacks(t.leaked_fds, [JOBS[i % 6]] * len(t.leaks)),
        "true fds, the jobs in turn": lambda i, t: stacks(t.leaked_fds, [JOBS[k % 6] for k in range(len(t.leaks))]),
        "true fds, two functions alternating": lambda i, t: stacks(
            t.leaked_fds, [JOBS[(i + k % 2) % 6] for k in range(len(t.leaks))]),
        "true fds, every function in every stack": lambda i, t: stacks(t.leaked_fds, [JOBS] * len(t.leaks)),
        "true fds, two functions in every stack": lambda i, t: stacks(t.leaked_fds, [JOBS[:2]] * len(t.leaks)),
        "true fds, four maps of one function each": lambda i, t: "".join(
            map_("@g%d" % k, {fd: simulate.ustack(JOBS[k]) for fd in t.leaked_fds}) for k in range(4)),
        "true fds, last run's functions in order": lambda i, t: stacks(
            t.leaked_fds, [SIMULATED[i - 1][1].leak_jobs[fd] for fd in SIMULATED[i - 1][1].leaked_fds]
            + [JOBS[0]] * len(t.leaks)),
        "best constant leak set, one function": lambda i, t: stacks(BEST["leaked"], [JOBS[1]] * 99),
        "every fd, one function": constant(map_("@opened_by", {fd: simulate.ustack(JOBS[2]) for fd in FD_RANGE})),
        "last run's answer": previous(q4_map),
        # a wrong method whose output depends on the run: the stack of every open, never deleted
        "every descriptor opened (no delete on close)": lambda i, t: stacks(
            t.opened_fds, [job for job in t.open_jobs]),
    },
}

BEST = {
    "seq": most_common(_seq, 1)[0], "seqs": most_common(_seq, 6),
    "leaked": most_common(_leaked, 1)[0], "leakeds": most_common(_leaked, 4),
    "pair": most_common(_pair, 1)[0], "pairs": most_common(_pair, 50),
}


@pytest.mark.parametrize("ex_id,name", [(ex, name) for ex, table in STRATEGIES.items() for name in table])
def test_guessing_passes_at_most_one_percent(ex_id, name):
    rate = pass_rate(ex_id, STRATEGIES[ex_id][name])
    print("%s %-40s %5.2f %% of %d runs" % (ex_id, name, 100 * rate, RUNS))
    assert rate <= LIMIT, (ex_id, name, rate)


def test_the_runs_are_drawn_like_the_lab():
    """The simulation follows the lab's randomization (count, leak period, starting descriptor) and
    every run has leaks to find and descriptors that change."""
    counts = Counter(len(t.opens) for _, t in SIMULATED)
    assert min(counts) >= 24 and max(counts) <= 201 and len(counts) > 150
    assert all(len(t.opens) % t.leak_every for _, t in SIMULATED)      # the last open is closed
    assert all(t.leaks and len(set(t.opened_fds)) > 1 for _, t in SIMULATED)
    firsts = Counter(t.opened_fds[0] for _, t in SIMULATED)
    assert min(firsts) == 4 and max(firsts) == 4 + 127
    assert random.Random(1).random() != random.Random(2).random()


# A course variant (grader/variants.py) renames kprobeme and its jobs: the same runs, in the variant's names, with
# every guess renamed too, must get the same verdicts from the variant's lab, run for run.
VARIANT_LAB = load_lab("kprobes", course_seed="a simulated course")
VARIANT_RUNS = 100
_in_variant = {}


def in_variant(i, truth):
    if i not in _in_variant:
        _in_variant[i] = simulate.in_course_variant(truth, VARIANT_LAB.variant)
    return _in_variant[i]


@pytest.mark.parametrize("ex_id,name", [(ex, name) for ex, table in STRATEGIES.items() for name in table])
def test_guessing_rates_hold_on_a_course_variant(ex_id, name):
    from grader.variants import rename

    ex, names = EX[ex_id], VARIANT_LAB.variant
    assert names and VARIANT_LAB.workload["program"] != "kprobeme"
    check = VARIANT_LAB.checks[ex.check]
    for i, (_, truth) in enumerate(SIMULATED[:VARIANT_RUNS]):
        text = STRATEGIES[ex_id][name](i, truth)
        canonical = LAB.checks[ex.check](bpftrace_output.parse(text), truth, ex.params).passed
        variant = check(bpftrace_output.parse(rename(text, names)), in_variant(i, truth), ex.params).passed
        assert canonical == variant, (i, canonical, variant)
