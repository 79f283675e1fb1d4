"""The property of issue 34 (Done when): across 1000 simulated runs per lab, a script that reads only the workload's
I/O or the files it can reach passes no question.

Such an oracle does not trace what a question is about; it prints what it can read.  Modelled per run:

- the workload's write() and read() payloads during the window, with its pid and comm as a probe sees them:
  kprobeme's one-byte notice (``.``) at the loop's end and, at each of its opens, the lab file's contents (a
  line of random hex the agent wrote, then the read that returns 0); uprobeme's notice (it reads no file).
  Neither writes a truth record while scripts trace (they write their log at exit: grader/agent.py);
- every file under /opt/bpfhol and /run it could print if cat() were allowed (the agent refuses cat()): the
  lab texts, lab.yaml, the checks and examples, the workloads' sources, the agent, the run's lab file and
  its decoy (by content: the oracle never learns their names), the agent's lock (its pid).

Each run's output is judged for every question by the lab's real checks, and by the whole verdict path
(grading.judge_exercise: the lab's probe kinds, then probe_on), with an oracle source that uses the lab's probe
kind on the I/O functions.  Runs come from tests/simulate.py (kprobes) and the uprobes checks' generator.
The I/O and the run's own files are judged in all 1000 runs; the lab's static files (the same text in every
run, 3,000-odd lines the checks read one by one: ~0.1 s a run) in the first FILE_RUNS of them.
Measured: 0 passes for every question of both labs, by the checks alone and by the whole path.
"""

import random
import sys
from pathlib import Path

import pytest

import simulate
from grader import bpftrace_output
from grader.grading import judge_exercise
from grader.labspec import load_lab

RUNS = 1000
FILE_RUNS = 40
REPO = Path(__file__).resolve().parents[2]
ORACLE_SOURCE = {
    # What a student writes to read a workload's I/O with the lab's own probe kind.
    "kprobes": 'kprobe:vfs_read, kprobe:vfs_write /comm == "kprobeme"/ { @buf[tid] = arg1; }\n'
               'kretprobe:vfs_read, kretprobe:vfs_write /@buf[tid]/ { printf("%d %s\\n", pid, str(@buf[tid])); }',
    "uprobes": 'uprobe:libc:write /comm == "uprobeme"/ { printf("%d %s\\n", pid, str(arg1, arg2)); }\n'
               'uprobe:libc:read /comm == "uprobeme"/ { @buf[tid] = arg1; }\n'
               'uretprobe:libc:read /@buf[tid]/ { printf("%d %s\\n", pid, str(@buf[tid], retval)); }',
}


def reachable_files(lab_name):
    """The text of every file of /opt/bpfhol a provisioned VM holds for the lab (roles: workloads, lab_text,
    grader_access), as an oracle with cat() would print it: one printf line per line of text."""
    lab_dir = REPO / "labs" / lab_name
    paths = [lab_dir / "README.md", lab_dir / "lab.yaml", REPO / "grader" / "agent.py"]
    paths += sorted(lab_dir.glob("workload/*.c")) + sorted(lab_dir.glob("examples/*.bt"))
    paths += sorted(lab_dir.glob("checks/*.py")) + sorted(lab_dir.glob("checks.py"))
    lines = []
    for path in paths:
        lines += [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines


def kprobes_runs():
    lab = load_lab("kprobes")
    rng = random.Random(20261207)
    return lab, [simulate.simulated_run(lab, rng) + (rng,) for _ in range(RUNS)]


def kprobes_oracle(run, truth, rng):
    """What the kprobes oracle prints in one run: the workload's read/write payloads, then what cat() could."""
    pid = truth.events[0]["pid"]
    content = "bpfhol lab data %016x" % rng.getrandbits(64)            # make_lab_files: a fresh random line
    lines = []
    for _ in range(int(run["args"]["count"])):
        lines += ["%d %s" % (pid, content), "%d " % pid]                # the read of the line, then EOF
    lines.append("%d ." % pid)                                          # the notice at the loop's end
    lines += [content, "not the lab file", str(rng.randint(300, 4000000))]   # lab file, decoy, the agent's lock
    return lines


def uprobes_runs():
    from grader.truth import parse_truth

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_uprobes_checks import simulated_log               # the uprobes checks' run generator

    lab = load_lab("uprobes")
    rng = random.Random(20261207)
    runs = []
    for _ in range(RUNS):
        truth = parse_truth(simulated_log(rng))
        truth.comm = lab.workload_comm
        runs.append((None, truth, rng))
    return lab, runs


def uprobes_oracle(run, truth, rng):
    pid = truth.events[0]["pid"]
    return ["%d ." % pid, str(rng.randint(300, 4000000))]             # the notice; the agent's lock


@pytest.fixture(scope="module", params=["kprobes", "uprobes"])
def lab_runs(request):
    lab, runs = kprobes_runs() if request.param == "kprobes" else uprobes_runs()
    oracle = kprobes_oracle if request.param == "kprobes" else uprobes_oracle
    return request.param, lab, [(truth, oracle(run, truth, rng)) for run, truth, rng in runs]


def judged(name, lab, truth, lines):
    """{exercise id: (passed by the whole verdict path, its reason, passed by the check alone)} for one output."""
    text = simulate.printf(*lines)
    item = {"name": "x", "status": "ran", "source": ORACLE_SOURCE[name], "attached": True, "exit_code": 0,
            "stdout": text, "stderr": ""}
    output = None
    verdicts = {}
    for ex in lab.exercises:
        verdict = judge_exercise(ex, lab, item, truth)
        if verdict.reason == "not_probed":             # the check itself was never asked: ask it too
            output = output or bpftrace_output.parse(text)
            alone = lab.checks[ex.check](output, truth, ex.params).passed
        else:
            alone = verdict.passed                      # judge_exercise's verdict is the check's
        verdicts[ex.id] = (verdict.passed, verdict.reason, alone)
    return verdicts


def tally(name, lab, cases):
    by_path, by_check, reasons = {ex.id: 0 for ex in lab.exercises}, {ex.id: 0 for ex in lab.exercises}, {}
    for truth, lines in cases:
        for ex_id, (passed, reason, alone) in judged(name, lab, truth, lines).items():
            by_path[ex_id] += passed
            by_check[ex_id] += alone
            reasons.setdefault(ex_id, set()).add(reason)
    return by_path, by_check, {k: sorted(v) for k, v in reasons.items()}


def test_an_oracle_on_the_workloads_io_passes_no_question_in_1000_runs(lab_runs):
    name, lab, cases = lab_runs
    assert len(cases) == RUNS and cases[0][1] != cases[1][1]          # per run: the runs' outputs differ
    by_path, by_check, reasons = tally(name, lab, cases)
    print("%s: the I/O oracle over %d runs passes, by the verdict path %s, by the checks alone %s; reasons %s"
          % (name, len(cases), by_path, by_check, reasons))
    assert by_path == {ex.id: 0 for ex in lab.exercises}
    assert by_check == {ex.id: 0 for ex in lab.exercises}
    for ex in lab.exercises:
        if ex.probe_on:
            assert reasons[ex.id] == ["not_probed"], (ex.id, reasons[ex.id])


def test_an_oracle_that_also_prints_every_reachable_file_passes_no_question(lab_runs):
    """The same, with every text file of /opt/bpfhol printed after the I/O (3,000-odd lines: the checks read
    each, so this takes the first FILE_RUNS runs to stay within seconds; the files are the same in every run)."""
    name, lab, cases = lab_runs
    files = reachable_files(name)
    by_path, by_check, reasons = tally(name, lab, [(truth, lines + files) for truth, lines in cases[:FILE_RUNS]])
    print("%s: with %d lines of reachable files, over %d runs: by the verdict path %s, by the checks alone %s; "
          "reasons %s" % (name, len(files), FILE_RUNS, by_path, by_check, reasons))
    assert len(files) > 1000
    assert by_path == {ex.id: 0 for ex in lab.exercises}
    assert by_check == {ex.id: 0 for ex in lab.exercises}
