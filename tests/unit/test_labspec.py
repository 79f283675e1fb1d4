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
    assert len({r["args"]["spare-fds"] for r in runs}) > 10
    assert all(r["decoy_file"] and r["decoy_file"].rsplit("/", 1)[0] == r["create_file"].rsplit("/", 1)[0]
               for r in runs)
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
    ("name: x\nworkload: {program: k}\nchecks_from: kprobes\nwindow_seconds: 9999\n"
     "exercises: [{id: q1, script: q.bt, check: opened_path}]\n", "window_seconds"),
    ("name: x\nworkload: {program: k}\nchecks_module: ../kprobes/checks\nexercises: [{id: q1, script: q.bt, check: a}]\n",
     "checks_module must be a file or folder name in the lab folder"),
    ("name: x\nworkload: {program: k}\nchecks_module: nosuch.py\nexercises: [{id: q1, script: q.bt, check: a}]\n",
     "checks_module nosuch.py not found"),
    ("name: x\nworkload: {program: k}\nchecks_from: nosuch\nexercises: [{id: q1, script: q.bt, check: a}]\n",
     "checks_from: no lab 'nosuch'; known labs: .*kprobes"),
    ("name: x\nworkload: {program: k}\nchecks_from: kprobes\nchecks_module: checks.py\n"
     "exercises: [{id: q1, script: q.bt, check: a}]\n", "not both"),
    ("name: x\nworkload: {program: k}\nchecks_from: kprobes\nexercises: [{id: q1, script: q.bt, check: call_values}]\n",
     "unknown check 'call_values'; this lab's checks .*: fd_per_open, leak_sites, leaked_fds, opened_path"),
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

    lab = load_lab("kprobes")
    for ex in lab.exercises:
        source = inspect.getsource(lab.checks[ex.check])
        reasons = set(re.findall(r'Verdict\(False, "(\w+)"', source)) - {"no_truth"}
        assert reasons, ex.check
        assert reasons <= set(ex.hints), (ex.id, sorted(reasons - set(ex.hints)))


def test_a_lab_sees_only_its_own_checks(tmp_path):
    """The core knows no lab's checks: each lab's come from its own folder (a checks.py file, or a checks/
    package like the kprobes lab's), and a check of another lab, even one already loaded, is unknown."""
    kprobes, uprobes = load_lab("kprobes"), load_lab("uprobes")
    assert sorted(kprobes.checks) == ["fd_per_open", "leak_sites", "leaked_fds", "opened_path"]
    assert sorted(uprobes.checks) == ["call_values", "caller_counts", "latency_hist"]
    assert Path(kprobes.checks_module.__file__) == REPO / "labs" / "kprobes" / "checks" / "__init__.py"
    with pytest.raises(GraderError, match="unknown check 'leak_sites'; this lab's checks .*: none"):
        load_lab(str(_broken(tmp_path, "name: x\nworkload: {program: k}\n"
                                       "exercises: [{id: q1, script: q.bt, check: leak_sites}]\n")))


def test_a_lab_reuses_another_labs_checks_by_name(tmp_path):
    """checks_from: the tracepoints test lab asks the kprobes lab's questions with other probes; the lab named is
    found beside the lab first, then among the installed labs."""
    lab = load_lab(str(REPO / "tests" / "fixtures" / "labs" / "tracepoints"))
    assert lab.checks == load_lab("kprobes").checks and lab.require_probe_types == ["tracepoint"]
    shutil.copytree(REPO / "labs" / "uprobes", tmp_path / "mine")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "lab.yaml").write_text(
        "name: other\nworkload: {program: uprobeme}\nchecks_from: mine\n"
        "exercises: [{id: u1, script: u1.bt, check: call_values}]\n")
    assert sorted(load_lab(str(tmp_path / "other")).checks) == ["call_values", "caller_counts", "latency_hist"]


def test_a_checks_package_that_fails_to_import_is_one_line(tmp_path):
    lab = tmp_path / "mylab"
    (lab / "checks").mkdir(parents=True)
    (lab / "checks" / "__init__.py").write_text("from . import missing\n")
    (lab / "lab.yaml").write_text("name: mylab\nworkload: {program: k}\nchecks_module: checks\n"
                                  "exercises: [{id: q1, script: q.bt, check: a}]\n")
    with pytest.raises(GraderError, match=r"mylab/checks failed to load: ImportError") as info:
        load_lab(str(lab))
    assert "\n" not in str(info.value)


def test_checks_from_a_lab_whose_spec_is_not_a_mapping_names_it(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "lab.yaml").write_text("- just a list\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "lab.yaml").write_text("name: mine\nworkload: {program: k}\nchecks_from: broken\n"
                                               "exercises: [{id: q1, script: q.bt, check: a}]\n")
    with pytest.raises(GraderError, match=r"checks_from: .*broken/lab.yaml is not a lab spec") as info:
        load_lab(str(tmp_path / "mine"))
    assert "\n" not in str(info.value)
