"""The provisioning code passes ansible-lint (production profile, see .ansible-lint) and
ansible-playbook --syntax-check, and the roles keep the conventions the design asks for."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = ["bpfhol", "bpftrace", "kernel_headers", "toolchain", "workloads", "bpfhol_menu", "lab_text",
         "grader_access"]


def tool(name):
    """The tool from the venv running the tests, else from PATH."""
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -r requirements-dev.txt)")
    return found


def env():
    e = dict(os.environ)
    e["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    e["NO_COLOR"] = "1"
    e["PATH"] = f"{Path(sys.executable).parent}:{e.get('PATH', '')}"
    return e


def test_ansible_lint_production_profile_is_clean():
    res = subprocess.run([tool("ansible-lint"), "--nocolor", "--offline"], cwd=REPO, env=env(),
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert "Profile 'production' was required, and it passed" in out, out[-3000:]


def test_playbook_syntax_check():
    res = subprocess.run([tool("ansible-playbook"), "--syntax-check", "-i", "localhost,",
                          "playbooks/lab.yml"], cwd=REPO, env=env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_playbook_finds_roles_from_any_directory(tmp_path):
    """Vagrant and other inventories run the playbook from elsewhere (no ansible.cfg)."""
    e = env()
    del e["ANSIBLE_CONFIG"]
    res = subprocess.run([tool("ansible-playbook"), "--syntax-check", "-i", "localhost,",
                          str(REPO / "playbooks" / "lab.yml")], cwd=tmp_path, env=e,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_playbook_applies_all_roles_to_all_hosts_as_root():
    plays = yaml.safe_load((REPO / "playbooks" / "lab.yml").read_text())
    assert len(plays) == 1
    play = plays[0]
    assert play["hosts"] == "all" and play["become"] is True
    assert sorted(r["role"] for r in play["roles"]) == sorted(ROLES)


def test_every_role_default_is_commented():
    for role in ROLES:
        path = REPO / "roles" / role / "defaults" / "main.yml"
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line and not line.startswith((" ", "#", "-")) and line != "---":
                assert i > 0 and lines[i - 1].startswith("#"), f"{path}:{i + 1} has no comment"


def test_sudoers_template_holds_exactly_one_rule():
    text = (REPO / "roles/grader_access/templates/sudoers.j2").read_text()
    rules = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert rules == ["{{ grader_access_user }} ALL=(root) NOPASSWD: "
                     "{{ grader_access_prefix }}/sbin/bpfhol-agent"]


def test_grader_access_fails_clearly_without_the_agent(tmp_path):
    """A checkout without grader/agent.py stops at once with a message that says what to fix."""
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n"
        "  connection: local\n"
        "  gather_facts: true\n"
        "  roles:\n"
        f"    - role: {REPO / 'roles' / 'grader_access'}\n")
    placeholder = tmp_path / "grader"
    placeholder.mkdir()
    (placeholder / "__init__.py").write_text("")
    # the role's dependency (role bpfhol) checks the host first: accept this machine's service manager
    # (tests may run in a container without systemd)
    res = subprocess.run([tool("ansible-playbook"), "-i", "localhost,", str(play), "-e",
                          f"ansible_python_interpreter={sys.executable}", "-e",
                          '{"bpfhol_supported_service_managers": ["{{ ansible_facts.service_mgr }}"]}', "-e",
                          f"grader_access_agent_src={tmp_path / 'missing-agent.py'}", "-e",
                          f"grader_access_package_src={placeholder}"],
                         cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "The grader is missing: expected the agent at " + str(tmp_path / "missing-agent.py") in out
    assert "failed=1" in out
