"""Correct answers written differently must pass (and the checks stay exact while doing so).

Two corpora:
* SIMULATED: outputs a student's script would print in many correct forms (other wordings,
  multi-key maps as both bpftrace versions print them, lhist, counts in words, lines naming their
  process among other processes' lines), built from the truth of 200 simulated runs each;
* RECORDED: the variant scripts in tests/fixtures/scripts/kprobes/variants_*/ really run by the
  agent on real lab VMs (bpftrace 0.23 on Debian 13, 0.17 on Debian 12), judged from the
  recording (tests/fixtures/record.py); tests/test_recorded_outputs.py holds them to
  tests/expected_verdicts.py, and this file checks that every variant has been recorded.
Near-misses (one descriptor off, one open missing) must fail: an exact check is only honest if
the truth it compares with is exact too, which the agent's start barrier gives.
"""

import json
from collections import Counter
from pathlib import Path

import pytest

import simulate
from simulate import map_, printf
from grader import bpftrace_output
from grader.labspec import load_lab

LAB = load_lab("kprobes")
EX = {ex.id: ex for ex in LAB.exercises}
RUNS = simulate.runs(LAB, 200, seed=99)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"




def judge(ex_id, text, truth):
    ex = EX[ex_id]
    return LAB.checks[ex.check](bpftrace_output.parse(text), truth, ex.params)


def noise(t):
    """Lines other processes add to an unfiltered script's output (the agent's decoy, a shell)."""
    return ["python3 %d" % (3 + i % 5) for i in range(30)] + ["bash 7"]


VARIANTS = {
    "q1": {
        "printf with comm and pid": lambda t: printf("kprobeme pid %d opens %s" % (t.pid, t.file)),
        "struct filename in do_filp_open": lambda t: printf(t.file),
        "base name from the dentry": lambda t: printf("opened " + t.file.rsplit("/", 1)[1]),
        "map of paths": lambda t: map_("@files", {t.file: len(t.opens)}),
        "first path then exit": lambda t: printf(t.file),
        "path as a map value": lambda t: map_("@path", {t.pid: t.file}),
    },
    "q2": {
        "a line per open": lambda t: printf(*["open %s -> fd %d" % (t.file, fd) for fd in t.opened_fds]),
        "fd= with pid and tid": lambda t: printf(*["pid=%d tid=%d fd=%d" % (t.pid, t.pid, fd) for fd in t.opened_fds]),
        "entry and return lines": lambda t: printf(*[x for fd in t.opened_fds for x in ("openat %s" % t.file,
                                                                                       "ret %d" % fd)]),
        "plus read and close lines": lambda t: printf(*[x for fd in t.opened_fds for x in
                                                        ("open fd %d" % fd, "read fd %d 33" % fd, "read fd %d 0" % fd,
                                                         "close fd %d" % fd)]),
        "unfiltered, each line names its process": lambda t: printf(*(
            [x for fd in t.opened_fds for x in ("kprobeme %d" % fd,)] + noise(t))),
        "map fd -> opens": lambda t: map_("@fds", dict(Counter(t.opened_fds))),
        "map (pid, fd) as 0.17 prints it": lambda t: map_("@fds", {"%d,%d" % (t.pid, fd): c
                                                                   for fd, c in Counter(t.opened_fds).items()}),
        "map (comm, fd) as 0.23 prints it": lambda t: map_("@", {"kprobeme,%d" % fd: c
                                                                 for fd, c in Counter(t.opened_fds).items()}),
        "map in event order": lambda t: map_("@order", dict(enumerate(t.opened_fds))),
        "lhist with step 1": lambda t: json.dumps({"type": "hist", "data": {"@fd": [
            {"min": fd, "max": fd, "count": c} for fd, c in sorted(Counter(t.opened_fds).items())]}}) + "\n",
    },
    "q3": {
        "map of open fds": lambda t: map_("@open", {fd: 1 for fd in t.leaked_fds}),
        "map (pid, fd) with times": lambda t: map_("@open", {"%d,%d" % (t.pid, fd): 123456789 + fd
                                                             for fd in t.leaked_fds}),
        "map (comm, fd)": lambda t: map_("@open", {"kprobeme,%d" % fd: 1 for fd in t.leaked_fds}),
        "leaked fd=N lines": lambda t: printf(*["leaked fd=%d" % fd for fd in t.leaked_fds]),
        "pid P leaked fd N lines": lambda t: printf(*["pid %d leaked fd %d" % (t.pid, fd) for fd in t.leaked_fds]),
        "one line listing them": lambda t: printf("still open: " + " ".join(map(str, t.leaked_fds))),
        "opens N closes M": lambda t: printf("opens %d closes %d" % (len(t.opens), len(t.closes))),
        "N opens, M closes": lambda t: printf("kprobeme: %d opens, %d closes" % (len(t.opens), len(t.closes))),
        "opened N files and closed M": lambda t: printf("opened %d files and closed %d" % (len(t.opens),
                                                                                          len(t.closes))),
        "scalar count maps": lambda t: map_("@opens", len(t.opens)) + map_("@closes", len(t.closes)),
        "counts per probe": lambda t: map_("@calls", {"kretprobe:do_sys_openat2": len(t.opens),
                                                      "tracepoint:syscalls:sys_enter_close": len(t.closes)}),
        "counts per comm": lambda t: map_("@opens", {"kprobeme": len(t.opens)})
        + map_("@closes", {"kprobeme": len(t.closes)}),
        "running totals, last one counts": lambda t: printf(*["opens so far: %d" % i for i in range(1, len(t.opens) + 1)]
                                                            + ["closes so far: %d" % i
                                                               for i in range(1, len(t.closes) + 1)]),
        "counts and leaks map together": lambda t: map_("@open", {fd: 1 for fd in t.leaked_fds})
        + map_("@opens", len(t.opens)) + map_("@closes", len(t.closes)) + map_("@path", {t.pid: t.file}),
    },
    # q4: the leaked descriptors, each with a value naming the job whose open leaked it.
    "q4": {
        "fd -> ustack": simulate.q4_map,
        "(pid, fd) -> ustack as 0.17 prints it": lambda t: map_("@s", {"%d,%d" % (t.pid, fd): simulate.ustack(j)
                                                                       for fd, j in t.leak_jobs.items()}),
        "(comm, fd) -> ustack": lambda t: map_("@s", {"kprobeme,%d" % fd: simulate.ustack(j)
                                                      for fd, j in t.leak_jobs.items()}),
        "perf-style frames": lambda t: map_("@leaks", {fd: "\n\t55d0c1a2b3c4 syscall+25 (/usr/lib/libc.so.6)\n"
                                                          "\t55d0c1a2b3c5 %s+15 (/opt/bpfhol/bin/kprobeme)\n" % j
                                                           for fd, j in t.leak_jobs.items()}),
        "two frames only": lambda t: map_("@site", {fd: "\n        syscall+25\n        %s+15\n" % j
                                                    for fd, j in t.leak_jobs.items()}),
        "function name from a uprobe": lambda t: map_("@leaked_in", {fd: j for fd, j in t.leak_jobs.items()}),
        "beside q3's map and counts": lambda t: (map_("@open", {fd: 1 for fd in t.leaked_fds})
                                                 + map_("@opens", len(t.opens)) + simulate.q4_map(t)),
    },
}

NEAR_MISSES = {
    "q1": {"the decoy too": lambda t: printf(t.file, t.decoys[0])},
    "q2": {
        "one open missing": lambda t: printf(*["fd %d" % fd for fd in t.opened_fds[1:]]),
        "one fd off": lambda t: printf(*["fd %d" % (fd + (i == 3)) for i, fd in enumerate(t.opened_fds)]),
        "map with a count off": lambda t: map_("@fds", {fd: c + (fd == t.opened_fds[0])
                                                        for fd, c in Counter(t.opened_fds).items()}),
        "unfiltered, no process named": lambda t: printf(*(["%d" % fd for fd in t.opened_fds]
                                                           + [n.split()[1] for n in noise(t)])),
    },
    "q3": {
        "a leak missing": lambda t: map_("@open", {fd: 1 for fd in t.leaked_fds[1:]}),
        "a descriptor too many": lambda t: map_("@open", {fd: 1 for fd in t.leaked_fds + [max(t.opened_fds) + 1]}),
        "one close missed": lambda t: printf("opens %d closes %d" % (len(t.opens), len(t.closes) - 1)),
        "only the number of leaks": lambda t: printf("leaks: %d" % len(t.leaks)),
        "still open listed as opens": lambda t: printf("opens %d" % len(t.opens),
                                                       "still open: %d" % len(t.leaks)),
    },
    "q4": {
        "one leak missing": lambda t: map_("@s", {fd: simulate.ustack(j) for fd, j in list(t.leak_jobs.items())[1:]}),
        "one stack from the other leaky job": lambda t: map_("@s", {
            fd: simulate.ustack(j if k else [x for x in t.leaky if x != j][0])
            for k, (fd, j) in enumerate(t.leak_jobs.items())}),
        "stacks taken at close (a steady job)": lambda t: map_("@s", {
            fd: simulate.ustack([x for x in simulate.JOBS if x not in t.leaky][0]) for fd in t.leaked_fds}),
        "one frame only (ustack(1))": lambda t: map_("@s", {fd: "\n        syscall+25\n" for fd in t.leaked_fds}),
        "kernel stacks": lambda t: map_("@s", {fd: "\n        do_sys_openat2+5\n        __x64_sys_openat+85\n"
                                                   "        do_syscall_64+93\n" for fd in t.leaked_fds}),
        "every open kept": lambda t: map_("@s", {fd: simulate.ustack(j) for (_, fd, _), j in zip(t.opens, t.open_jobs)}),
    },
}


@pytest.mark.parametrize("ex_id,name", [(ex, n) for ex, table in VARIANTS.items() for n in table])
def test_correct_answer_written_differently_passes_every_run(ex_id, name):
    make = VARIANTS[ex_id][name]
    failed = [(t.pid, judge(ex_id, make(t), t)) for _, t in RUNS if not judge(ex_id, make(t), t).passed]
    assert not failed, failed[:2]


@pytest.mark.parametrize("ex_id,name", [(ex, n) for ex, table in NEAR_MISSES.items() for n in table])
def test_near_misses_fail_every_run(ex_id, name):
    make = NEAR_MISSES[ex_id][name]
    passed = [t.pid for _, t in RUNS if judge(ex_id, make(t), t).passed]
    assert not passed


def test_every_variant_folder_is_recorded_from_both_bpftrace_generations():
    variants = sorted(p.name for p in (FIXTURES / "scripts" / "kprobes").iterdir() if p.name.startswith("variants"))
    assert len(variants) >= 5
    for case in variants + ["cheat_shotgun"]:
        for version in ("0.23", "0.17"):
            assert list(FIXTURES.glob("bpftrace/%s.*/kprobes-%s.json" % (version, case))), (version, case)


VARIANT_LAB = load_lab("kprobes", course_seed="a simulated course")
_IN_VARIANT = {}


@pytest.mark.parametrize("ex_id,name", [(ex, n) for ex, table in VARIANTS.items() for n in table])
def test_correct_answers_pass_on_a_course_variant_in_its_names(ex_id, name):
    """The same honest forms, written for a course variant's names (grader/variants.py), pass every run of it (the
    public answers' failure on a variant is shown for real: tests/integration/test_course_variants.py)."""
    from grader.variants import rename

    ex, names = EX[ex_id], VARIANT_LAB.variant
    for i, (_, truth) in enumerate(RUNS[:50]):
        text = VARIANTS[ex_id][name](truth)
        if i not in _IN_VARIANT:
            _IN_VARIANT[i] = simulate.in_course_variant(truth, names)
        theirs = _IN_VARIANT[i]
        assert VARIANT_LAB.checks[ex.check](bpftrace_output.parse(rename(text, names)), theirs, ex.params).passed
