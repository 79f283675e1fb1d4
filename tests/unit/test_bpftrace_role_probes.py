"""roles/bpftrace asks the host for kprobes only when an installed lab needs them (its lab.yaml host_probe): run
for real, in --check mode, against this machine, whose kernel has uprobes but no kprobes.  About 15 s."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST_PYTHON = "/usr/bin/python3"          # Ansible's apt module needs the system's python3-apt


def bpftrace_role(labs):
    playbook = Path(sys.executable).parent / "ansible-playbook"
    if not playbook.exists() or not Path("/etc/debian_version").exists():
        pytest.skip("needs ansible-playbook and a Debian controller (the supported-host check runs first)")
    if subprocess.run([HOST_PYTHON, "-c", "import apt"], capture_output=True).returncode != 0:
        pytest.skip("the system python3 has no python3-apt")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", NO_COLOR="1")
    res = subprocess.run([str(playbook), "-i", "localhost,", "-c", "local", "-e",
                          "ansible_python_interpreter=%s" % HOST_PYTHON, "-e",
                          '{"bpfhol_supported_service_managers": ["{{ ansible_facts.service_mgr }}"]}',
                          "-e", '{"bpfhol_labs": %s}' % labs, str(REPO / "playbooks" / "lab.yml"),
                          "--tags", "bpftrace", "--check"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    return res.returncode, " ".join((res.stdout + res.stderr).split())


def test_a_host_without_kprobes_is_fine_for_the_uprobes_lab_alone():
    if Path("/sys/kernel/tracing/kprobe_events").exists():
        pytest.skip("this kernel has kprobes: the refusal below cannot be shown here")
    code, out = bpftrace_role('["uprobes"]')
    assert code == 0 and re.search(r"failed=0", out), out[-3000:]
    for task in ("Check that the kernel has kprobes", "Fail when the kernel cannot do kprobes"):
        assert re.search(r"TASK \[bpftrace : %s\] \**\s*skipping: \[localhost\]" % task, out), (task, out[-3000:])
    code, out = bpftrace_role('["kprobes", "uprobes"]')
    assert code != 0 and "has no /sys/kernel/tracing/kprobe_events" in out, out[-3000:]
    assert "leave out of bpfhol_labs the labs whose lab.yaml says host_probe: kprobe" in out
