"""The lab registry end to end on the controller: Ansible renders roles/workloads/templates/labs.json.j2
with the roles' real defaults (the same template task the role runs), and the menu's own loader
(roles/bpfhol_menu/files/bpfhol) reads the result.  So the template and the menu cannot drift apart
unnoticed: a renamed key or a broken JSON fails here, not on a student's VM."""

import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MENU = REPO / "roles" / "bpfhol_menu" / "files" / "bpfhol"


def ansible_playbook():
    cand = Path(sys.executable).parent / "ansible-playbook"
    if cand.exists():
        return str(cand)
    found = shutil.which("ansible-playbook")
    if found is None:
        pytest.skip("ansible-playbook is not installed (pip install -r requirements-dev.txt)")
    return found


def render_registry(tmp_path, extra_vars=None):
    """Run the workloads role's own template task on localhost, with the defaults of roles/bpfhol and
    roles/workloads (what a real play sees); returns the written file."""
    dest = tmp_path / "labs.json"
    play = tmp_path / "render.yml"
    play.write_text(f"""
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {REPO}/roles/bpfhol/defaults/main.yml
    - {REPO}/roles/workloads/defaults/main.yml
  tasks:
    - name: Read the labs' manifests as the bpfhol role does
      ansible.builtin.include_tasks: {REPO}/roles/bpfhol/tasks/labs.yml
    - name: Draw each lab's names as the workloads role does
      ansible.builtin.include_tasks: {REPO}/roles/workloads/tasks/variants.yml
    - name: Render the lab registry as the workloads role does
      ansible.builtin.template:
        src: {REPO}/roles/workloads/templates/labs.json.j2
        dest: {dest}
        mode: "0644"
""")
    cmd = [ansible_playbook(), "-i", "localhost,", str(play), "-e", f"ansible_python_interpreter={sys.executable}",
           "-e", f"workloads_variants_script={REPO}/grader/variants.py", "-e", f"bpfhol_labs_dir={REPO}/labs",
           "-e", f"bpfhol_manifest_script={REPO}/grader/labmanifest.py"]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return dest


def menu_module():
    loader = importlib.machinery.SourceFileLoader("bpfhol_menu_registry_test", str(MENU))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_default_registry_is_what_the_menu_expects(tmp_path):
    path = render_registry(tmp_path)
    raw = json.loads(path.read_text())
    assert raw["version"] == 1 and raw["prefix"] == "/opt/bpfhol"
    labs = menu_module().load_registry(str(path))
    assert labs == [{"name": "kprobes", "title": "Kernel dynamic probes (kprobes) with bpftrace", "text": "~/lab/kprobes.md",
                     "workloads": [{"name": "kprobeme", "unit": "bpfhol-kprobeme.service"}]},
                    {"name": "uprobes", "title": "User-space dynamic probes (uprobes) with bpftrace",
                     "text": "~/lab/uprobes.md", "workloads": [{"name": "uprobeme", "unit": "bpfhol-uprobeme.service"}]}]
    # the unit the registry names is the unit the role installs (workload.service.j2 -> bpfhol-<name>.service)
    [wl] = raw["labs"][0]["workloads"]
    assert wl["binary"] == "/opt/bpfhol/bin/kprobeme"


def test_a_new_lab_and_prefix_reach_the_menu_without_code_changes(tmp_path):
    """A new lab is a folder and its name in bpfhol_labs: its lab.yaml (title, menu) is all the roles read."""
    labs_dir = tmp_path / "labs"
    shutil.copytree(REPO / "labs" / "kprobes", labs_dir / "kprobes", ignore=shutil.ignore_patterns("__pycache__"))
    (labs_dir / "newlab" / "workload").mkdir(parents=True)
    (labs_dir / "newlab" / "lab.yaml").write_text(yaml.safe_dump({
        "name": "newlab", "title": "User-space probes", "workload": {"program": "uprobeme"},
        "menu": [{"program": "uprobeme", "args": ["--interval-ms", "500"], "description": 'quotes " and \\ survive'},
                 {"program": "helper"}],
        "host_probe": "uprobe", "exercises": []}))
    path = render_registry(tmp_path, {"bpfhol_labs": ["kprobes", "newlab"], "bpfhol_prefix": "/srv/lab",
                                      "bpfhol_labs_dir": str(labs_dir)})
    raw = json.loads(path.read_text())
    assert raw["prefix"] == "/srv/lab"
    assert raw["labs"][1]["workloads"][0]["description"] == 'quotes " and \\ survive'
    assert raw["labs"][1]["dir"] == "/srv/lab/labs/newlab"
    labs = menu_module().load_registry(str(path))
    assert [lab["name"] for lab in labs] == ["kprobes", "newlab"]
    assert [wl["unit"] for wl in labs[1]["workloads"]] == ["bpfhol-uprobeme.service", "bpfhol-helper.service"]
    # and the menu itself, run as a program on that file, lists both labs
    env = dict(os.environ, BPFHOL_REGISTRY=str(path), PATH=f"{tmp_path}/bin:{os.environ['PATH']}")
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "systemctl"
    fake.write_text("#!/bin/sh\necho ActiveState=inactive\necho SubState=dead\necho MainPID=0\n")
    fake.chmod(0o755)
    res = subprocess.run([sys.executable, str(MENU), "list"], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "newlab: User-space probes" in res.stdout
    assert "workload helper: stopped" in res.stdout


def test_a_course_seed_names_the_workloads_as_the_grader_draws_them(tmp_path):
    """The roles draw a course's names with the grader's own code (grader/variants.py, run on the controller): the
    registry, the units and the binaries say the names the grader's --course-seed gives."""
    from grader.labspec import load_lab

    path = render_registry(tmp_path, {"bpfhol_course_seed": "cs326-fall"})
    labs = menu_module().load_registry(str(path))
    for lab in labs:
        program = load_lab(lab["name"], course_seed="cs326-fall").workload["program"]
        assert program not in ("kprobeme", "uprobeme")
        assert lab["workloads"] == [{"name": program, "unit": "bpfhol-%s.service" % program}]
