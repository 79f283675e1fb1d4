import random
import shutil
from pathlib import Path

import pytest

from grader.errors import GraderError
from grader.labspec import available_labs, load_lab

REPO = Path(__file__).resolve().parents[2]


def test_kprobes_lab_loads_and_randomizes():
    lab = load_lab("kprobes")
    assert [e.script for e in lab.exercises] == ["q1.bt", "q2.bt", "q3.bt"]
    assert set(lab.require_probe_types) == {"kprobe", "kretprobe"}
    runs = [lab.workload_run(random.Random(seed)) for seed in range(20)]
    assert len({r["args"]["file"] for r in runs}) == 20
    assert len({r["args"]["leak-every"] for r in runs}) > 1
    assert all(r["create_file"].startswith("/var/tmp/bpfhol-lab/") for r in runs)
    assert "kprobes" in available_labs()


def _broken(tmp_path, text):
    lab = tmp_path / "mylab"
    lab.mkdir()
    (lab / "lab.yaml").write_text(text)
    return lab


@pytest.mark.parametrize("text,msg", [
    ("name: x\nexercises: [\n", "not valid YAML"),
    ("- 1\n", "must be a mapping"),
    ("name: x\nworkload: {program: kprobeme}\nexercises: []\n", "must not be empty"),
    ("name: x\nworkload: {program: kprobeme}\nexercises: [{id: q1, script: q1.bt, check: nope}]\n", "unknown check"),
    ("name: x\nworkload: {program: 'a b'}\nexercises: [{id: q1, script: q1.bt, check: opened_path}]\n",
     "plain program name"),
    ("name: x\nworkload: {program: k}\nexercises: [{id: q1, script: ../q1.bt, check: opened_path}]\n", "plain name"),
    ("name: x\nworkload: {program: k}\nwindow_seconds: 9999\nexercises: [{id: q1, script: q.bt, check: opened_path}]\n",
     "window_seconds"),
])
def test_malformed_spec_is_one_line_error(tmp_path, text, msg):
    with pytest.raises(GraderError, match=msg) as info:
        load_lab(str(_broken(tmp_path, text)))
    assert "\n" not in str(info.value)


def test_unknown_lab_names_the_known_ones():
    with pytest.raises(GraderError, match="known labs: .*kprobes"):
        load_lab("nosuch")
    with pytest.raises(GraderError, match="unknown lab"):
        load_lab("../etc")


def test_a_new_lab_is_a_new_folder(tmp_path):
    shutil.copytree(REPO / "labs" / "kprobes", tmp_path / "uprobes")
    text = (tmp_path / "uprobes" / "lab.yaml").read_text().replace("name: kprobes", "name: uprobes")
    (tmp_path / "uprobes" / "lab.yaml").write_text(text)
    assert load_lab(str(tmp_path / "uprobes")).name == "uprobes"


def _simulated_truth(run):
    """What kprobeme does in one grading run with these parameters (an open at t=0, then one per
    interval until the run length; every k-th open leaks its fd, the others are closed)."""
    from grader.truth import Truth

    args = run["args"]
    n = int(args["duration-s"] * 1000 // args["interval-ms"]) + 1
    truth, fd = Truth(leak_every=args["leak-every"]), 3 + run["fd_offset"]
    for seq in range(1, n + 1):
        truth.opens.append((seq, fd, args["file"]))
        if seq % args["leak-every"] == 0:
            truth.leaks.append((seq, fd))
            fd += 1
        else:
            truth.closes.append((seq, fd))
    return truth


def test_made_up_counts_rarely_pass_the_leak_question():
    """q3 accepts "opens N closes M" (opens minus closes = leaks). A script that prints constants
    instead of tracing must pass only by luck: the lab randomizes the rate and the leak period so
    that even the best constant pair matches few runs (was 36 % with ~1 s intervals)."""
    from grader import bpftrace_output
    from grader.checks import CHECKS

    lab = load_lab("kprobes")
    q3 = [e for e in lab.exercises if e.id == "q3"][0]
    truths = [_simulated_truth(lab.workload_run(random.Random(seed))) for seed in range(300)]
    assert all(t.leaks for t in truths)                     # every run has something to find
    best = 0.0
    for opens in range(5, 60):
        for leaks in range(1, 25):
            line = '{"type": "printf", "data": "it leaks: opens %d closes %d\\n"}\n' % (opens, opens - leaks)
            out = bpftrace_output.parse(line)
            rate = sum(CHECKS[q3.check](out, t, q3.params).passed for t in truths) / len(truths)
            best = max(best, rate)
    assert best < 0.10, best
    # and the honest answer, the same numbers traced, passes every run
    for t in truths[:50]:
        line = '{"type": "printf", "data": "opens %d closes %d\\n"}\n' % (len(t.opens), len(t.closes))
        assert CHECKS[q3.check](bpftrace_output.parse(line), t, q3.params).passed
