"""The lab on arm64, in an emulated arm64 guest (opt-in: BPFHOL_ARCH=arm64 scripts/test -- -m vm).

With BPFHOL_ARCH=arm64 the `lab_vm` fixture (tests/vm/conftest.py, ArmLabVM) builds the arm64 image from Debian's
mirror (images/build-box --arch arm64), boots it under qemu-system-aarch64 with UEFI (images/qemu-vm --arch arm64)
and provisions it with playbooks/lab.yml; then the same test_lab.py (examples, solutions, bpfhol start, changed=0
on the second run) and test_grading_vm.py (reference 13/13, wrong/cheat/broken/empty_path verdicts) run against
it.  This file adds what is arm64's own: the image, UEFI boot, the syscall entry points students see, and the
figures images/README.md records (box build, boot, provisions, attach, grading one student).  Without
BPFHOL_ARCH=arm64 it is skipped: emulated arm64 costs about an hour on this 2-core machine.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.vm, pytest.mark.timeout(7200),
              pytest.mark.skipif(os.environ.get("BPFHOL_ARCH", "amd64") != "arm64",
                                 reason="arm64 guest tests are opt-in: BPFHOL_ARCH=arm64 scripts/test -- -m vm")]


def test_arm64_image_comes_from_debian_and_is_cached(lab_box):
    assert lab_box["arch"] == "arm64" and lab_box["kernel"].endswith("-arm64"), lab_box
    assert lab_box["box_name"].endswith("-arm64")
    pkgs = dict(p.split("=", 1) for p in lab_box["packages"])
    assert f"linux-headers-{lab_box['kernel']}" in pkgs and f"linux-image-{lab_box['kernel']}" in pkgs
    assert {"bpftrace", "gcc", "python3", "ansible-core"} <= set(pkgs)
    d = Path(lab_box["dir"])
    assert d.name.startswith("arm64-") and (d / "disk.qcow2").stat().st_size > 100 * 2 ** 20
    with tarfile.open(d / "bpfhol.box") as tar:
        meta = json.load(tar.extractfile("metadata.json"))
        vagrantfile = tar.extractfile("Vagrantfile").read().decode()
    assert meta == {"provider": "libvirt", "format": "qcow2", "virtual_size": 20, "architecture": "arm64"}
    assert "machine_arch = 'aarch64'" in vagrantfile and "AAVMF" in vagrantfile
    t0 = time.time()
    r = subprocess.run([str(REPO / "images" / "build-box"), "--arch", "arm64", "--suite", lab_box["suite"],
                        "--no-add", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout.strip().splitlines()[-1])
    assert again["cached"] is True and again["hash"] == lab_box["hash"]
    assert time.time() - t0 < 30


def test_guest_is_arm64_booted_through_uefi_with_matching_headers(lab_vm):
    r = lab_vm.run("uname -m; dpkg --print-architecture; uname -r; test -d /sys/firmware/efi && echo uefi;"
                   " dpkg-query -W -f '${Status}\\n' linux-headers-$(uname -r);"
                   " test -f /lib/modules/$(uname -r)/build/include/generated/autoconf.h && echo headers-ok;"
                   " grep -E '^CONFIG_(KPROBES|BPF_SYSCALL|DEBUG_INFO_BTF|FTRACE_SYSCALLS)=y' /boot/config-$(uname -r)",
                   timeout=60, check=True)
    lines = r.stdout.split("\n")
    assert lines[0:2] == ["aarch64", "arm64"], r.stdout
    assert lines[2].endswith("-arm64")
    assert "uefi" in lines and "install ok installed" in lines and "headers-ok" in lines
    assert len([ln for ln in lines if ln.startswith("CONFIG_")]) == 4, r.stdout


def test_syscall_entry_points_are_the_arm64_ones(lab_vm):
    """What a student meets when the text lists syscall kprobes: __arm64_sys_* here, __x64_sys_* on x86_64;
    do_sys_openat2 and the close path are the same as on x86_64 with the same kernel: file_close_fd on 6.12
    (Debian 13), close_fd alone on 6.1 (Debian 12, which has no file_close_fd)."""
    r = lab_vm.run("for p in '__arm64_sys_openat' '__x64_sys_openat' 'do_sys_openat2' 'file_close_fd' 'close_fd';"
                   " do printf '%s=%s\\n' \"$p\" \"$(bpftrace -l \"kprobe:$p\" | wc -l)\"; done;"
                   " echo tp=$(bpftrace -l 'tracepoint:syscalls:sys_enter_close' | wc -l); echo release=$(uname -r)",
                   timeout=300, sudo=True, check=True)
    found = dict(ln.split("=") for ln in r.stdout.split())
    print(f"kprobe listing on arm64: {found}")
    assert found["__arm64_sys_openat"] == "1" and found["__x64_sys_openat"] == "0"
    assert found["do_sys_openat2"] == "1" and found["close_fd"] == "1" and found["tp"] == "1"
    assert found["file_close_fd"] == ("0" if found["release"].startswith("6.1.") else "1"), found


def test_kprobe_attach_time(lab_vm):
    """Launch to attached for the q1 solution (a kprobe on do_sys_openat2), bpftrace's own -c barrier."""
    t0 = time.time()
    r = lab_vm.run("bpftrace -e 'kprobe:do_sys_openat2 /pid == cpid/ { @n++; } END { printf(\"n=%d\\n\", @n);"
                   " clear(@n); }' -c '/bin/cat /etc/hostname'", timeout=600, sudo=True)
    took = round(time.time() - t0, 1)
    assert r.returncode == 0 and re.search(r"n=[1-9]", r.stdout), r.stdout + r.stderr
    lab_vm.timings["attach_s"] = took
    print(f"bpftrace kprobe launch to exit (attached, fired, printed): {took} s")


def test_grading_one_student(lab_vm, tmp_path):
    roster = tmp_path / "vm.yml"
    roster.write_text(yaml.safe_dump([{"student": "arm64", "host": lab_vm.host, "port": lab_vm.port,
                                       "user": "bpfhol-grader", "key": lab_vm.grader_key}]))
    subs = tmp_path / "SUBMISSIONS"
    shutil.copytree(REPO / "labs" / "kprobes" / "solutions", subs / "reference")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "grader", "submissions", str(subs), "--vms", str(roster),
                           "--results", str(tmp_path / "results"), "--quiet"], cwd=REPO, capture_output=True,
                          text=True, timeout=1800)
    lab_vm.timings["grade_one_s"] = round(time.time() - t0, 1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = [json.loads(ln) for ln in (tmp_path / "results" / "journal.jsonl").read_text().splitlines()]
    assert row["score"] == row["max_score"] == 13, row["exercises"]
    assert row["facts"]["arch"] == "aarch64", row["facts"]     # the agent reported the guest it ran on


def test_one_concern_redeploys_alone(lab_vm):
    """--tags grader_access: the host check and that role only, nothing changed."""
    t0 = time.time()
    out = lab_vm.provision(tags="grader_access")
    lab_vm.timings["tagged_provision_s"] = round(time.time() - t0, 1)
    recap = lab_vm.recap(out)
    assert recap.get("failed", 0) == 0 and recap.get("changed") == 0, recap
    assert "TASK [grader_access : Create the grader account]" in out
    assert "TASK [workloads :" not in out.replace("TASK [workloads : Validating arguments", "")
