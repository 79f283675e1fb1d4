"""Every reason code the grader or a lab's checks can return has a human label (grader/checks/reasons.py), and
the not-gradable errors the grader writes fall into the group whose fix applies to them."""

import re
from pathlib import Path

from grader.checks.reasons import EXERCISE_REASONS, label, not_gradable_group
from grader.labspec import load_lab

ROOT = Path(__file__).resolve().parents[2]
VERDICT = re.compile(r'Verdict\(\s*[^,()]+,\s*"([a-z_0-9]+)"')
GRADER_REASON = re.compile(r'reason="([a-z_0-9]+)"|return "([a-z_0-9]+)", |"status"\) in \(([^)]*)\)')


def codes_in_sources(lab=None):
    """The reason codes the grader returns (lab=None), or one lab's checks."""
    codes = set()
    if lab is not None:
        for path in (ROOT / "labs" / lab).rglob("*.py"):
            codes |= set(VERDICT.findall(path.read_text()))
        return codes
    for path in list((ROOT / "labs").rglob("*.py")):
        codes |= set(VERDICT.findall(path.read_text()))
    for match in GRADER_REASON.finditer((ROOT / "grader" / "grading.py").read_text()):
        codes |= {c for c in match.groups()[:2] if c}
        codes |= set(re.findall(r'"([a-z_]+)"', match.group(3) or ""))
    return codes


def test_every_reason_code_in_the_sources_has_a_label():
    """Each lab's codes have words in the grader's table or in the lab's own lab.yaml (reason_labels): a new lab
    adds its labels in its folder."""
    codes = codes_in_sources()
    assert {"close_path", "not_found", "missing", "compile_error", "stop_timeout", "too_large"} <= codes
    in_labs = set()
    for lab_dir in sorted(p.parent for p in (ROOT / "labs").glob("*/lab.yaml")):
        lab = load_lab(lab_dir.name)
        in_labs |= codes_in_sources(lab_dir.name)
        unlabelled = codes_in_sources(lab_dir.name) - set(EXERCISE_REASONS) - set(lab.reason_labels)
        assert unlabelled == set(), (lab_dir.name, unlabelled)
    assert codes - in_labs - set(EXERCISE_REASONS) == set()          # the grader's own codes: its table
    assert label("close_path") == "closes not taken into account" and label("brand_new") == "brand new"
    usdt = load_lab("usdt")
    assert label("wrong_sums", usdt) == "wrong totals per name" and label("wrong_sums") == "wrong sums"


def test_not_gradable_errors_fall_into_the_group_whose_fix_applies():
    cases = {
        "host unreachable after 3 tries: root@127.0.0.1:9 ([Errno None] Unable to connect to port 9)": "unreachable",
        "authentication refused for bpfhol-grader@10.0.0.1:22 (check the user and key in the roster)": "auth",
        "host key changed: VM rebuilt? rerun with --replace-host-keys (x's key differs)": "host_key",
        "no scripts found in /home/vagrant/answers/kprobes (fix: ...)": "no_scripts",
        "key file not found: /k (fix the roster's key column)": "roster",
        "duplicate student id (row 3 repeats row 1)": "roster",
        "bpfhol-agent is not installed on h: re-run the lab playbook": "agent",
        "host busy: a grading job cut off 30s ago still runs on h": "busy",
        "VM broken: tracefs is not mounted at /sys/kernel/tracing, so no probe can attach": "vm_broken",
        "connection to h lost during the run": "connection",
        "grader error: KeyError: 'x'": "grader_error",
        "something nobody foresaw": "other",
    }
    for error, group in cases.items():
        assert not_gradable_group(error)[0] == group, error
    code, group_label, fix = not_gradable_group(list(cases)[0])
    assert group_label == "host unreachable" and "vagrant up" in fix
