import random
import shutil
from pathlib import Path

import pytest

from grader.errors import GraderError
from grader.labspec import available_labs, load_lab

REPO = Path(__file__).resolve().parents[2]


def test_kprobes_lab_loads_and_randomizes():
    lab = load_lab("kprobes")
    assert [e.script for e in lab.exercises] == ["q1.bt", "q2.bt", "q3.bt", "q4.bt"]
    assert set(lab.require_probe_types) == {"kprobe", "kretprobe"}
    runs = [lab.workload_run(random.Random(seed)) for seed in range(20)]
    assert len({r["args"]["file"] for r in runs}) == 20
    assert len({r["args"]["leak-every"] for r in runs}) > 1
    assert all(r["create_file"].startswith("/run/bpfhol-lab/") for r in runs)
    counts = [r["args"]["count"] for r in runs]
    assert all(24 <= c <= 201 for c in counts) and len(set(counts)) > 10
    # the opens are spread over the window, and the starting descriptor really moves
    assert all(r["args"]["interval-ms"] * r["args"]["count"] <= r["args"]["duration-s"] * 1000 for r in runs)
    assert all(r["args"].get("spare-fds", 0) == r["fd_offset"] for r in runs)
    assert len({r["fd_offset"] for r in runs}) > 10
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


def test_every_failure_reason_of_a_check_has_a_hint():
    """A student who fails learns what to do next: each reason a check can give has a hint in lab.yaml
    (no_truth is the lab VM's fault, not the student's, and says so itself)."""
    import inspect
    import re

    from grader.checks import CHECKS

    lab = load_lab("kprobes")
    for ex in lab.exercises:
        source = inspect.getsource(CHECKS[ex.check])
        reasons = set(re.findall(r'Verdict\(False, "(\w+)"', source)) - {"no_truth"}
        assert reasons, ex.check
        assert reasons <= set(ex.hints), (ex.id, sorted(reasons - set(ex.hints)))
