"""The real-VM fixture: build (or reuse) the lab box, `vagrant up --provider libvirt`, hand out SSH, destroy.

    @pytest.mark.vm
    def test_something(lab_vm):
        r = lab_vm.run("bpftrace --version", timeout=60)      # subprocess.CompletedProcess (text)
        assert r.returncode == 0
        out = lab_vm.provision()                              # text of `vagrant provision`
        assert lab_vm.recap(out)["changed"] == 0

API of the object `lab_vm` (session scope, one VM for the whole run):
    ssh_config   text of `vagrant ssh-config`
    host, port, user, key   where and how to SSH (key = path of the private key file)
    run(cmd, timeout=120, sudo=False, check=False) -> CompletedProcess; cmd runs under bash on the guest,
                 bounded on both sides (remote `timeout -k 5`, local subprocess timeout + 30 s)
    provision(timeout=1800) -> str: output of `vagrant provision` (raises AssertionError on failure)
    recap(text) -> dict: the PLAY RECAP totals over all hosts {"ok", "changed", "unreachable", "failed", ...}
    vagrant(*args, timeout=600) -> CompletedProcess of a vagrant command in this VM's environment
    guest        "debian13" | "debian12"
    answers_dir  host folder shared as /home/vagrant/answers
    box          dict from images/build-box --json (dir, hash, kernel, cached, elapsed_s, box_name, ...)
    timings      {"box_s", "up_s"} (up includes the first provision)
    up_output    text of `vagrant up`
    accel        "kvm" | "tcg"
    grader_key   private key (ed25519) whose public half is provisioned for user bpfhol-grader
    name         the unique libvirt domain prefix of this VM (bpfhol-test-<hex>)
    up(timeout=2400, provision=True), destroy()   used by the fixture (and bench/provision.py)

Environment: BPFHOL_GUEST (debian13 default | debian12); BPFHOL_ARCH=arm64 makes `lab_vm` an emulated arm64 guest
instead (ArmLabVM below: images/build-box --arch arm64, booted with images/qemu-vm --arch arm64, provisioned with
ansible-playbook; same API; opt-in and slow, not part of the default run); BPFHOL_SKIP_VM=1 skips (the only reason to skip:
otherwise a box that does not build or a VM that does not boot is a test failure); BPFHOL_KEEP_VM=1 keeps the VM
after the run (its .vagrant dir is printed).  The VM gets its own libvirt domain name and its own .vagrant dir
(VAGRANT_DOTFILE_PATH), so it never collides with a student's `vagrant up` in vagrant/.  It is brought up from the
student edition of the working tree (scripts/release-student --worktree into its workdir), as students get it: the
playbook and roles run from there, and what they install comes from there (`edition`: that folder).
"""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ansible_recap import play_recap  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SUITES = {"debian13": "trixie", "debian12": "bookworm"}
ARCH = os.environ.get("BPFHOL_ARCH", "amd64")
ARM64_HOST_TOOLS = {"qemu-system-aarch64": "qemu-system-arm", "mkfs.fat": "dosfstools", "mcopy": "mtools",
                    "debootstrap": "debootstrap", "update-binfmts": "binfmt-support"}


def _tail(text, n=25):
    return "\n".join((text or "").strip().splitlines()[-n:])


def student_edition(into):
    """What students clone: scripts/release-student of this working tree (no reference answers), with this
    checkout's .venv where the edition's own scripts/setup-host would have made one."""
    r = subprocess.run([str(REPO / "scripts" / "release-student"), "--worktree", str(into)], capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"scripts/release-student failed: {r.stdout}{r.stderr}")
    if (REPO / ".venv").is_dir():
        os.symlink(REPO / ".venv", Path(into) / ".venv")
    return Path(into)


class LabVM:
    def __init__(self, workdir, guest):
        self.workdir = Path(workdir)
        self.guest = guest
        self.name = "bpfhol-test-" + uuid.uuid4().hex[:8]
        self.answers_dir = self.workdir / "answers"
        self.answers_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / "vagrant.log"
        # The VM is brought up and provisioned from the student edition, as a student does it.
        self.edition = student_edition(self.workdir / "edition")
        self.env = dict(os.environ, VAGRANT_CWD=str(self.edition / "vagrant"), VAGRANT_DOTFILE_PATH=str(self.workdir / ".vagrant"),
                        BPFHOL_GUEST=guest, BPFHOL_VM_NAME=self.name, BPFHOL_ANSWERS_DIR=str(self.answers_dir),
                        VAGRANT_DEFAULT_PROVIDER="libvirt", VAGRANT_NO_COLOR="1", VAGRANT_CHECKPOINT_DISABLE="1",
                        ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        # The instructor's grader key, provisioned through vagrant/Vagrantfile's BPFHOL_GRADER_PUBKEYS_FILE.
        self.grader_key = str(self.workdir / "grader_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bpfhol-test-grader", "-f",
                        self.grader_key], check=True, timeout=30)
        self.env["BPFHOL_GRADER_PUBKEYS_FILE"] = self.grader_key + ".pub"
        # The guest's serial console in a file: what a guest that stops answering said last (oops, panic, stall).
        self.console_log = self.workdir / "console.log"
        self.env["BPFHOL_CONSOLE_LOG"] = str(self.console_log)
        self.ssh_config = ""
        self.host = self.port = self.user = self.key = None
        self.box = {}
        self.timings = {}
        self.up_output = ""
        self.accel = None
        self._cfg = self.workdir / "ssh_config"

    # -- vagrant -------------------------------------------------------------------------------------------
    def vagrant(self, *args, timeout=600):
        try:
            r = subprocess.run(["vagrant", *args], env=self.env, cwd=self.workdir, capture_output=True, text=True,
                               timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            raise AssertionError(f"vagrant {' '.join(args)} timed out after {timeout}s:\n{_tail(out)}")
        with open(self.log, "a") as f:
            f.write(f"$ vagrant {' '.join(args)}  (exit {r.returncode})\n{r.stdout}{r.stderr}\n")
        return r

    def up(self, timeout=2400, provision=True):
        t0 = time.time()
        r = self.vagrant("up", "--provider", "libvirt", *([] if provision else ["--no-provision"]), timeout=timeout)
        self.timings["up_s"] = round(time.time() - t0, 1)
        self.up_output = r.stdout + r.stderr
        if r.returncode != 0:
            raise AssertionError(f"vagrant up failed (exit {r.returncode}); log {self.log}:\n{_tail(self.up_output)}")
        r = self.vagrant("ssh-config", timeout=120)
        if r.returncode != 0:
            raise AssertionError(f"vagrant ssh-config failed: {_tail(r.stderr)}")
        self.ssh_config = r.stdout
        self._cfg.write_text(self.ssh_config)
        fields = {}
        for line in self.ssh_config.splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                fields.setdefault(parts[0], parts[1].strip('"'))
        self.host, self.port = fields.get("HostName"), int(fields.get("Port", 22))
        self.user, self.key = fields.get("User"), fields.get("IdentityFile")
        self.ssh_host = fields.get("Host", "default")

    def provision(self, timeout=1800):
        t0 = time.time()
        r = self.vagrant("provision", timeout=timeout)
        self.timings.setdefault("next_provisions_s", []).append(round(time.time() - t0, 1))
        out = r.stdout + r.stderr
        if r.returncode != 0:
            raise AssertionError(f"vagrant provision failed (exit {r.returncode}):\n{_tail(out, 40)}"
                                 + (self.diagnose() if "UNREACHABLE" in out else ""))
        return out

    def diagnose(self):
        """Why the guest does not answer SSH: its libvirt state, its DHCP lease(s), the end of its console."""
        def virsh(*args):
            try:
                return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True,
                                      timeout=30).stdout.strip()
            except subprocess.TimeoutExpired:
                return "(virsh timed out)"
        doms = [d for d in virsh("list", "--all", "--name").split() if d.startswith(self.name)]
        lines = [f"\n--- guest diagnosis (ssh config HostName {self.host})"]
        for dom in doms:
            lines.append(f"domain {dom}: {virsh('domstate', dom, '--reason')}")
            lines.append(virsh("domifaddr", dom, "--source", "lease"))
        try:
            console = re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|\[!p|.)", "",
                             self.console_log.read_bytes().decode(errors="replace"))
        except OSError as e:
            console = f"(no console log: {e})"
        lines.append(f"console ({self.console_log}), last lines:\n{_tail(console, 40)}")
        return "\n".join(lines)

    @staticmethod
    def recap(text):
        return play_recap(text)

    def destroy(self):
        r = self.vagrant("destroy", "-f", timeout=300)
        if r.returncode != 0:  # last resort: the domain by its unique name
            for dom in subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                                      capture_output=True, text=True, timeout=60).stdout.split():
                if dom.startswith(self.name):
                    subprocess.run(["virsh", "-c", "qemu:///system", "destroy", dom], capture_output=True, timeout=60)
                    subprocess.run(["virsh", "-c", "qemu:///system", "undefine", dom, "--remove-all-storage"],
                                   capture_output=True, timeout=60)

    # -- ssh -----------------------------------------------------------------------------------------------
    def run(self, cmd, timeout=120, sudo=False, check=False):
        remote = f"timeout -k 5 {int(timeout)} bash -c {shlex.quote(cmd)}"
        if sudo:
            remote = "sudo -n " + remote
        argv = ["ssh", "-F", str(self._cfg), "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
                "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3", self.ssh_host, remote]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ssh command did not return within {timeout + 30}s: {cmd}")
        if check and r.returncode != 0:
            raise AssertionError(f"guest command failed (exit {r.returncode}): {cmd}\n{_tail(r.stdout)}\n"
                                 f"{_tail(r.stderr)}" + (self.diagnose() if r.returncode == 255 else ""))
        return r


class ArmLabVM(LabVM):
    """The same API as LabVM for an emulated arm64 guest on this x86_64 machine: the arm64 image booted by
    images/qemu-vm (UEFI, TCG), provisioned by the host's ansible-playbook with playbooks/lab.yml (what
    Vagrant's ansible provisioner runs).  No Vagrant: vagrant-libvirt does not drive a foreign-arch guest here."""

    def __init__(self, workdir, guest):
        self.workdir = Path(workdir)
        self.guest = guest
        self.name = "bpfhol-test-arm64-" + uuid.uuid4().hex[:6]
        self.answers_dir = self.workdir / "answers"        # not shared with the guest (no synced folder)
        self.answers_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / "ansible.log"
        self.console_log = Path(f"/var/lib/bpfhol/qemu-vm/{self.name}/console.log")     # images/qemu-vm's
        self.grader_key = str(self.workdir / "grader_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bpfhol-test-grader", "-f",
                        self.grader_key], check=True, timeout=30)
        self.ssh_config = ""
        self.host, self.user, self.ssh_host = "127.0.0.1", "vagrant", "bpfhol-" + self.name
        self.port = self.key = None
        self.box = {}
        self.timings = {}
        self.up_output = ""
        self.accel = "kvm" if os.uname().machine == "aarch64" and os.access("/dev/kvm", os.W_OK) else "tcg"
        self._cfg = self.workdir / "ssh_config"
        self.inventory = self.workdir / "inventory.ini"
        # Every boot of the emulated guest has a new host key.  Mitogen (ansible.cfg's strategy, when installed)
        # enforces host-key checking with its own -o StrictHostKeyChecking=yes placed before the inventory's
        # ssh args, and ssh takes the first value: say it to Ansible itself (as Vagrant's provisioner does).
        # Provisioned from the student edition, as the amd64 VM is: what students get, and fixed for the run (a
        # working tree edited between the first and second provision made the second one change things).
        self.edition = student_edition(self.workdir / "edition")
        self.env = dict(os.environ, ANSIBLE_CONFIG=str(self.edition / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="False")

    def qemu_vm(self, *args, timeout=300):
        return subprocess.run([str(REPO / "images" / "qemu-vm"), *args, "--name", self.name], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def boot(self, timeout=1200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        t0 = time.time()
        r = self.qemu_vm("start", "--arch", "arm64", "--suite", SUITES[self.guest], "--port", str(port), "--fresh",
                         "--timeout", str(timeout - 60), timeout=timeout)
        self.timings["boot_s"] = round(time.time() - t0, 1)
        if r.returncode != 0:
            raise AssertionError(f"images/qemu-vm start --arch arm64 failed:\n{_tail(r.stderr)}")
        r = self.qemu_vm("ssh-config", timeout=60)
        self.ssh_config = r.stdout
        self._cfg.write_text(self.ssh_config)
        state = json.loads(self.qemu_vm("status", timeout=60).stdout)
        self.port = state["port"]
        self.key = f"/var/lib/bpfhol/qemu-vm/{self.name}/id_vagrant"
        self.inventory.write_text(
            f"{self.name} ansible_host=127.0.0.1 ansible_port={self.port} ansible_user=vagrant "
            f"ansible_ssh_private_key_file={self.key} ansible_ssh_common_args='-o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'\n")

    def ansible(self, *args, timeout=3600):
        pubkeys = [Path(self.grader_key + ".pub").read_text().strip()]
        playbook = Path(sys.executable).parent / "ansible-playbook"
        exe = str(playbook) if playbook.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")
        cmd = [exe, "-i", str(self.inventory), str(self.edition / "playbooks" / "lab.yml"), "-e",
               json.dumps({"bpfhol_student_user": "vagrant", "bpfhol_grader_pubkeys": pubkeys}), *args]
        try:
            r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ansible-playbook {' '.join(args)} did not finish in {timeout}s")
        with open(self.log, "a") as f:
            f.write(f"$ ansible-playbook {' '.join(args)}  (exit {r.returncode})\n{r.stdout}{r.stderr}\n")
        return r

    def up(self, timeout=4800, provision=True):
        self.boot()
        if provision:
            t0 = time.time()
            r = self.ansible(timeout=timeout)
            self.timings["first_provision_s"] = round(time.time() - t0, 1)
            self.up_output = r.stdout + r.stderr
            if r.returncode != 0:
                raise AssertionError(f"first provision of the arm64 guest failed; log {self.log}:\n"
                                     f"{_tail(self.up_output, 40)}")
        self.timings["up_s"] = round(self.timings["boot_s"] + self.timings.get("first_provision_s", 0), 1)

    def provision(self, timeout=3600, tags=None):
        t0 = time.time()
        r = self.ansible(*(["--tags", tags] if tags else []), timeout=timeout)
        if not tags:
            self.timings.setdefault("next_provisions_s", []).append(round(time.time() - t0, 1))
        out = r.stdout + r.stderr
        if r.returncode != 0:
            raise AssertionError(f"ansible-playbook against the arm64 guest failed (exit {r.returncode}):\n"
                                 f"{_tail(out, 40)}")
        return out

    def vagrant(self, *args, timeout=600):
        pytest.skip("no Vagrant for the emulated arm64 guest (it runs under images/qemu-vm)")

    def destroy(self):
        self.qemu_vm("stop", timeout=120)
        shutil.rmtree(f"/var/lib/bpfhol/qemu-vm/{self.name}", ignore_errors=True)


def build_box(guest, timeout=1800, arch="amd64"):
    """images/build-box --json for the guest's suite (and arch); returns its info dict (raises AssertionError)."""
    t0 = time.time()
    extra = ["--arch", arch] + ([] if arch == "amd64" else ["--no-add"])
    try:
        r = subprocess.run([str(REPO / "images" / "build-box"), "--suite", SUITES[guest], *extra, "--json"],
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"images/build-box did not finish in {timeout}s")
    if r.returncode != 0:
        raise AssertionError(f"images/build-box failed:\n{_tail(r.stdout)}\n{_tail(r.stderr)}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    info["wall_s"] = round(time.time() - t0, 1)
    return info


@pytest.fixture(scope="session")
def lab_vm_guest():
    guest = os.environ.get("BPFHOL_GUEST", "debian13")
    if guest not in SUITES:
        pytest.fail(f"BPFHOL_GUEST must be debian13 or debian12 (got {guest!r})")
    return guest


@pytest.fixture(scope="session")
def lab_box(lab_vm_guest):
    """The built (or cached) box; fails (not skips) when it cannot be built."""
    if os.environ.get("BPFHOL_SKIP_VM") == "1":
        pytest.skip("BPFHOL_SKIP_VM=1: real-VM tests skipped")
    if os.geteuid() != 0:
        pytest.fail("VM tests need root (debootstrap, libvirt); run them as root through scripts/test")
    if ARCH not in ("amd64", "arm64"):
        pytest.fail(f"BPFHOL_ARCH must be amd64 or arm64 (got {ARCH!r})")
    for tool in ("vagrant", "virsh", "debootstrap", "qemu-system-x86_64"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} missing: run scripts/setup-host")
    r = subprocess.run([str(REPO / "scripts" / "setup-host"), "--no-venv"], capture_output=True, text=True,
                       timeout=1800, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.fail(f"scripts/setup-host failed:\n{_tail(r.stdout)}\n{_tail(r.stderr)}")
    if ARCH == "arm64":      # setup-host installed these with BPFHOL_ARCH=arm64; say so if it could not
        missing = sorted({pkg for tool, pkg in ARM64_HOST_TOOLS.items() if not shutil.which(tool)})
        if missing:
            pytest.fail(f"BPFHOL_ARCH=arm64 needs: apt-get install {' '.join(missing)} qemu-user-static qemu-efi-aarch64")
    try:
        return build_box(lab_vm_guest, **({"timeout": 5400, "arch": "arm64"} if ARCH == "arm64" else {}))
    except AssertionError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def lab_vm(lab_box, lab_vm_guest, pytestconfig):
    workdir = tempfile.mkdtemp(prefix="bpfhol-vm-")
    vm = (ArmLabVM if ARCH == "arm64" else LabVM)(workdir, lab_vm_guest)
    vm.box = lab_box
    vm.timings["box_s"] = lab_box.get("wall_s")
    pytestconfig.bpfhol_vm_timings = vm.timings      # the end-of-run time table shows them (tests/conftest.py)
    if ARCH != "arm64":
        vm.accel = subprocess.run([str(REPO / "images" / "detect-accel")], capture_output=True, text=True,
                                  timeout=60).stdout.strip()
    try:
        try:
            vm.up()
        except AssertionError as e:
            pytest.fail(str(e))
        yield vm
    finally:
        if ARCH == "arm64":
            # kept after the run for images/README.md's record (the workdir goes)
            Path(os.environ.get("BPFHOL_VM_TIMINGS", "/tmp/bpfhol-vm-timings-arm64.json")).write_text(
                json.dumps(vm.timings, indent=1) + "\n")
            print(f"\narm64 VM timings: {json.dumps(vm.timings)}")
        if os.environ.get("BPFHOL_KEEP_VM") == "1" and ARCH == "arm64":
            print(f"\nBPFHOL_KEEP_VM=1: arm64 VM kept: images/qemu-vm ssh --name {vm.name}; "
                  f"inventory {vm.inventory}; stop: images/qemu-vm stop --name {vm.name}")
        elif os.environ.get("BPFHOL_KEEP_VM") == "1":
            print(f"\nBPFHOL_KEEP_VM=1: VM kept; VAGRANT_CWD={vm.edition}/vagrant VAGRANT_DOTFILE_PATH={workdir}/.vagrant "
                  f"BPFHOL_VM_NAME={vm.name} BPFHOL_ANSWERS_DIR={vm.answers_dir}")
        else:
            vm.destroy()
            shutil.rmtree(workdir, ignore_errors=True)
