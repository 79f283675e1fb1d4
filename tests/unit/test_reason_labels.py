"""Every reason code the grader or a lab's checks can return has a human label (grader/checks/reasons.py), and
the not-gradable errors the grader writes fall into the group whose fix applies to them."""

import re
from pathlib import Path

from grader.checks.reasons import EXERCISE_REASONS, label, not_gradable_group

ROOT = Path(__file__).resolve().parents[2]
VERDICT = re.compile(r'Verdict\(\s*[^,()]+,\s*"([a-z_0-9]+)"')
GRADER_REASON = re.compile(r'reason="([a-z_0-9]+)"|return "([a-z_0-9]+)", |"status"\) in \(([^)]*)\)')


def codes_in_sources():
    codes = set()
    for path in list((ROOT / "labs").rglob("*.py")):
        codes |= set(VERDICT.findall(path.read_text()))
    for match in GRADER_REASON.finditer((ROOT / "grader" / "grading.py").read_text()):
        codes |= {c for c in match.groups()[:2] if c}
        codes |= set(re.findall(r'"([a-z_]+)"', match.group(3) or ""))
    return codes


def test_every_reason_code_in_the_sources_has_a_label():
    codes = codes_in_sources()
    assert {"close_path", "not_found", "missing", "compile_error", "stop_timeout", "too_large"} <= codes
    assert codes - set(EXERCISE_REASONS) == set()
    assert label("close_path") == "closes not taken into account" and label("brand_new") == "brand new"


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
