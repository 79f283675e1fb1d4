"""The roles' conventions that make them quick to re-run and safe to reuse: one supported-host check
(role bpfhol, first in the play, a dependency of every role), a tag per role, the shared bpfhol_*
settings declared once, and an argument spec per role that lists exactly its settings.  The host
check is run for real with ansible-playbook against this machine."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES_DIR = REPO / "roles"
CONCERNS = ["toolchain", "kernel_headers", "bpftrace", "workloads", "bpfhol_menu", "lab_text", "grader_access"]
ALL_ROLES = ["bpfhol"] + CONCERNS


def tool(name):
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -r requirements-dev.txt)")
    return found


def env():
    e = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), NO_COLOR="1", ANSIBLE_NOCOLOR="1")
    e["PATH"] = f"{Path(sys.executable).parent}:{e.get('PATH', '')}"
    return e


def load(path):
    return yaml.safe_load(path.read_text())


def defaults_of(role):
    return load(ROLES_DIR / role / "defaults" / "main.yml") or {}


def test_every_role_is_in_the_play_with_its_own_tag_after_the_host_check():
    [play] = load(REPO / "playbooks" / "lab.yml")
    roles = play["roles"]
    assert roles[0] == {"role": "bpfhol"}, "the host check must come first (and its task is tagged always)"
    assert [r["role"] for r in roles[1:]] == CONCERNS
    for r in roles[1:]:
        assert r.get("tags") == [r["role"]], f"role {r['role']} needs tags: [{r['role']}]"
    assert sorted(p.name for p in ROLES_DIR.iterdir() if p.is_dir()) == sorted(ALL_ROLES)


def test_there_is_one_host_check_and_every_role_depends_on_it():
    checks = []
    for path in ROLES_DIR.glob("*/tasks/*.yml"):
        for task in load(path) or []:
            if "ansible_facts['distribution']" in yaml.safe_dump(task.get("ansible.builtin.assert", {})):
                checks.append(f"{path.relative_to(REPO)}: {task['name']}")
    assert checks == ["roles/bpfhol/tasks/main.yml: Check that this is a supported lab host"]
    [play] = load(REPO / "playbooks" / "lab.yml")
    assert "pre_tasks" not in play and "tasks" not in play
    for role in CONCERNS:
        deps = load(ROLES_DIR / role / "meta" / "main.yml")["dependencies"]
        assert deps == [{"role": "bpfhol"}], f"{role} must depend on bpfhol (host check, shared settings)"


def test_shared_settings_are_declared_once():
    """bpfhol_* settings live in roles/bpfhol/defaults only; the other roles use them without a
    second default (no `bpfhol_prefix | default(...)` copies that could drift apart)."""
    shared = set(defaults_of("bpfhol"))
    assert {"bpfhol_labs", "bpfhol_prefix", "bpfhol_student_user", "bpfhol_grader_pubkeys"} <= shared
    for role in CONCERNS:
        for path in (ROLES_DIR / role).rglob("*.yml"):
            text = path.read_text()
            for name in shared:
                assert not re.search(rf"{name}\s*\|\s*default\(", text), f"{path}: {name} defaulted again"
        own = set(defaults_of(role))
        assert not own & shared, f"{role} redeclares {own & shared}"
        prefix = "bpfhol_menu_" if role == "bpfhol_menu" else role + "_"
        assert all(name.startswith(prefix) for name in own), (role, own)


@pytest.mark.parametrize("role", ALL_ROLES)
def test_argument_spec_lists_exactly_the_role_settings(role):
    spec = load(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]
    assert spec["short_description"]
    options = spec["options"]
    assert sorted(options) == sorted(defaults_of(role)), "argument_specs.yml and defaults/main.yml differ"
    for name, opt in options.items():
        assert opt.get("type") in {"str", "path", "int", "bool", "list", "dict"}, (name, opt)
        assert opt.get("description"), f"{name} has no description"
        default = defaults_of(role)[name]
        if not (isinstance(default, str) and "{{" in default):     # templated defaults are checked at run time
            python_type = {"str": str, "path": str, "int": int, "bool": bool, "list": list, "dict": dict}
            assert isinstance(default, python_type[opt["type"]]), (name, default, opt["type"])


def run_playbook(*extra, tags="no_such_tag"):
    """The real playbook against this machine with only the always-tagged tasks selected (nothing is
    installed): Ansible gathers facts, validates every role's arguments and runs the host check."""
    return subprocess.run([tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}",
                           str(REPO / "playbooks" / "lab.yml"), "--tags", tags, *extra],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)


# This machine is the controller, not a lab host: it may run in a container without systemd, so the
# tests accept its own service manager and vary the Debian release to make the check fail.
THIS_SERVICE_MGR = ["-e", '{"bpfhol_supported_service_managers": ["{{ ansible_facts.service_mgr }}"]}']


def test_host_check_runs_once_whatever_the_tags():
    if not Path("/etc/debian_version").exists():
        pytest.skip("the controller is not Debian: the supported-host check would (rightly) refuse it")
    res = run_playbook(*THIS_SERVICE_MGR, tags="grader_access_nothing")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert out.count("TASK [bpfhol : Check that this is a supported lab host]") == 1, out[-3000:]
    assert "failed=0" in out
    # every role's argument spec was checked against the real values of its settings
    for role in ALL_ROLES:
        assert f"TASK [{role} : Validating arguments against arg spec 'main'" in out, role


def test_unsupported_host_stops_at_the_first_task_with_what_to_fix():
    res = run_playbook(*THIS_SERVICE_MGR, "-e", '{"bpfhol_supported_versions": ["11"]}', tags="grader_access")
    out = " ".join((res.stdout + res.stderr).split())      # the yaml callback wraps long messages
    assert res.returncode != 0
    assert "bpfhol lab hosts run Debian 11 with" in out and "this host is" in out
    assert "Provision a Debian 12 or 13 VM" in out
    assert re.search(r"ok=\d+ changed=0 unreachable=0 failed=1", out), out[-2000:]
    assert "TASK [grader_access : Check that the grader" not in out, "ran past the failed host check"


def test_wrong_setting_type_is_refused_before_anything_runs():
    res = run_playbook(*THIS_SERVICE_MGR, "-e", '{"bpfhol_grader_pubkeys": {"not": "a list"}}',
                       tags="grader_access")
    out = " ".join((res.stdout + res.stderr).split())
    assert res.returncode != 0
    assert "bpfhol_grader_pubkeys" in out and "list" in out, out[-2000:]


def test_tags_list_one_per_concern():
    res = subprocess.run([tool("ansible-playbook"), "-i", "localhost,", "--list-tags",
                          str(REPO / "playbooks" / "lab.yml")], cwd=REPO, env=env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    m = re.search(r"TASK TAGS: \[(.*)\]", res.stdout)
    assert m, res.stdout
    assert sorted(t.strip() for t in m.group(1).split(",")) == sorted(CONCERNS + ["always"])
