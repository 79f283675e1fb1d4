"""The lab VM's settings from the environment: bad values stop `vagrant up` with one line that names the fix
(run through the real Vagrantfile with `vagrant validate`, which evaluates it before talking to a provider),
and images/qemu-vm picks vCPUs by the same rule as the Vagrantfile (one for an x86_64 guest under TCG)."""

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def vagrant_validate(tmp_path, **env):
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        pytest.skip("vagrant is not installed (scripts/setup-host installs it)")
    e = {k: v for k, v in os.environ.items() if not k.startswith("BPFHOL_")}
    e.update(BPFHOL_ACCEL="tcg", VAGRANT_HOME=str(tmp_path / "vagrant.d"), **env)
    return subprocess.run([vagrant, "validate"], cwd=REPO / "vagrant", env=e, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("env, says", [
    ({"BPFHOL_CPUS": "two"}, 'BPFHOL_CPUS must be a whole number >= 1 (got "two")'),
    ({"BPFHOL_CPUS": "0"}, 'BPFHOL_CPUS must be a whole number >= 1 (got "0")'),
    ({"BPFHOL_MEMORY": "2G"}, 'BPFHOL_MEMORY must be a whole number >= 1024 (got "2G")'),
    ({"BPFHOL_CONSOLE_LOG": "/nonexistent-dir/console.log"}, "its folder does not exist or is not writable"),
    ({"BPFHOL_GUEST": "ubuntu"}, "BPFHOL_GUEST must be debian13 or debian12"),
])
def test_vagrantfile_refuses_bad_settings_in_one_line(tmp_path, env, says):
    res = vagrant_validate(tmp_path, **env)
    assert res.returncode != 0
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("bpfhol: ") and says in lines[0], lines
    assert "Traceback" not in res.stderr and ".rb:" not in res.stderr


def test_vagrantfile_accepts_good_settings_past_its_own_checks(tmp_path):
    """The same call with sound values gets past the Vagrantfile (it may then fail on the provider here,
    e.g. libvirtd not started, but not with a bpfhol: line)."""
    res = vagrant_validate(tmp_path, BPFHOL_CPUS="3", BPFHOL_MEMORY="4096",
                           BPFHOL_CONSOLE_LOG=str(tmp_path / "console.log"))
    assert "bpfhol:" not in res.stdout + res.stderr


def qemu_vm():
    loader = importlib.machinery.SourceFileLoader("qemu_vm_under_test", str(REPO / "images" / "qemu-vm"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("arch, accel, env, cpus", [
    ("amd64", "tcg", {}, 1),
    ("amd64", "kvm", {}, 2),
    ("arm64", "tcg", {}, 2),
    ("arm64", "kvm", {}, 2),
    ("amd64", "tcg", {"BPFHOL_CPUS": "2"}, 2),
    ("amd64", "kvm", {"BPFHOL_CPUS": "4"}, 4),
])
def test_qemu_vm_vcpus_follow_the_vagrantfile_rule(arch, accel, env, cpus):
    assert qemu_vm().default_cpus(arch, accel, env) == cpus


def test_qemu_vm_refuses_a_bad_cpu_count(capsys):
    with pytest.raises(SystemExit):
        qemu_vm().default_cpus("amd64", "tcg", {"BPFHOL_CPUS": "many"})
    assert "BPFHOL_CPUS must be a whole number >= 1 (got 'many')" in capsys.readouterr().err


def test_the_vagrantfile_states_the_same_rule():
    """Two files, one rule: if the Vagrantfile's vCPU line changes, this test asks to change qemu-vm too."""
    text = (REPO / "vagrant" / "Vagrantfile").read_text()
    assert "lv.cpus = !arm64 && accel == 'tcg' && ENV['BPFHOL_CPUS'].to_s == '' ? 1 : cpus" in text
