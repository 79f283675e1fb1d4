"""Two checkouts of the lab on one host each bring up their own VM, at the same time, with no settings.

The bug this guards: vagrant-libvirt names a domain "<folder>_<machine>", which is "vagrant_default" in every
checkout, so a second checkout's `vagrant up` stopped with "Name `vagrant_default` of domain about to create is
already taken".  The Vagrantfile now names the domain after the checkout and the guest.  Both VMs boot without
provisioning (the session VM covers the playbook): what is tested is that they coexist and answer SSH.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.vm


def copy_checkout(dest):
    """A second checkout as a student has one: the working tree (what is being tested), without .git/.venv."""
    subprocess.run(["rsync", "-a", "--exclude=.git/", "--exclude=.venv/", "--exclude=.vagrant/",
                    "--exclude=.pytest_cache/", "--exclude=vagrant/answers/", f"{REPO}/", f"{dest}/"],
                   check=True, timeout=120)
    return Path(dest)


def virsh_names():
    out = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
                         text=True, timeout=60).stdout
    return set(out.split())


def test_two_checkouts_bring_up_a_vm_each_at_once(lab_box, tmp_path):
    if os.environ.get("BPFHOL_ARCH", "amd64") != "amd64":
        pytest.skip("the emulated arm64 guest runs without Vagrant")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BPFHOL_", "VAGRANT_"))}
    env.update(VAGRANT_DEFAULT_PROVIDER="libvirt", VAGRANT_NO_COLOR="1", VAGRANT_CHECKPOINT_DISABLE="1",
               BPFHOL_GUEST=os.environ.get("BPFHOL_GUEST", "debian13"))
    if "VAGRANT_HOME" in os.environ:
        env["VAGRANT_HOME"] = os.environ["VAGRANT_HOME"]
    checkouts = [copy_checkout(tmp_path / name) for name in ("alice-lab", "bob-lab")]
    before = virsh_names()
    procs = []
    try:
        t0 = time.time()
        for c in checkouts:
            log = open(c / "up.log", "w")
            procs.append(subprocess.Popen(["vagrant", "up", "--no-provision"], cwd=c / "vagrant", env=env,
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        for c, p in zip(checkouts, procs):
            try:
                rc = p.wait(timeout=1500)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = "timeout"
            assert rc == 0, f"vagrant up in {c} failed ({rc}):\n" + (c / "up.log").read_text()[-3000:]
        print(f"\ntwo VMs up at once in {time.time() - t0:.0f} s")
        new = sorted(virsh_names() - before)
        assert len(new) == 2, new
        assert all(n.startswith(f"bpfhol-{env['BPFHOL_GUEST']}-") for n in new), new
        for c in checkouts:
            r = subprocess.run(["vagrant", "ssh", "-c", "hostname"], cwd=c / "vagrant", env=env,
                               capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
            assert r.returncode == 0 and f"bpfhol-{env['BPFHOL_GUEST']}" in r.stdout, r.stdout + r.stderr
    finally:
        for c in checkouts:
            subprocess.run(["vagrant", "destroy", "-f"], cwd=c / "vagrant", env=env, capture_output=True,
                           timeout=300, stdin=subprocess.DEVNULL)
        for dom in virsh_names() - before:          # whatever a failed up left behind
            subprocess.run(["virsh", "-c", "qemu:///system", "destroy", dom], capture_output=True, timeout=60)
            subprocess.run(["virsh", "-c", "qemu:///system", "undefine", dom, "--remove-all-storage"],
                           capture_output=True, timeout=60)
        shutil.rmtree(tmp_path, ignore_errors=True)
