#!/usr/bin/env python3
"""Figures for the lab VM flow (never pass/fail):

    box build (cached or not) | vagrant up (no provision) | playbook first run | playbook second run (+ changed=)
    | bpftrace kprobe launch-to-attached inside the VM (3 runs: cold, warm, warm) | accelerator (kvm/tcg)

Usage (root):  .venv/bin/python bench/provision.py [--guest debian13|debian12] [--keep] [--json]
Uses the same machinery as tests/vm/conftest.py (its own VM name and .vagrant dir; destroyed at the end).
BPFHOL_PLAYBOOK=/path/other.yml benchmarks another playbook.
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bpfhol_vm", REPO / "tests" / "vm" / "conftest.py")
vmlib = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vmlib)

ATTACH_PROBE = r'''
import json, subprocess, sys, time
t0 = time.time()
p = subprocess.Popen(["bpftrace", "-f", "json", "-e", "kprobe:do_sys_openat2 { @n = count(); }"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
dt = None
for line in p.stdout:
    if '"attached_probes"' in line:
        dt = time.time() - t0
        break
p.terminate()
try:
    p.wait(timeout=20)
except subprocess.TimeoutExpired:
    p.kill()
print(json.dumps({"attach_s": dt, "rc": p.returncode}))
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guest", default=os.environ.get("BPFHOL_GUEST", "debian13"), choices=sorted(vmlib.SUITES))
    ap.add_argument("--keep", action="store_true", help="keep the VM (prints how to reach it)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON document too")
    ap.add_argument("--provision-timeout", type=int, default=3600, help="bound of one `vagrant provision` (s)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/provision.py: run as root (builds the box, drives libvirt)")
    fig = {"guest": a.guest}
    r = subprocess.run([str(REPO / "scripts" / "setup-host"), "--no-venv"], capture_output=True, text=True,
                       timeout=1800)
    if r.returncode != 0:
        sys.exit("bench/provision.py: scripts/setup-host failed:\n" + r.stdout[-2000:] + r.stderr[-2000:])
    box = vmlib.build_box(a.guest)
    fig["box"] = {"cached": box["cached"], "wall_s": box["wall_s"], "hash": box["hash"], "kernel": box["kernel"],
                  "build_timings_s": box.get("timings")}
    fig["accel"] = subprocess.run([str(REPO / "images" / "detect-accel")], capture_output=True, text=True,
                                  timeout=60).stdout.strip()
    fig["host_load_1min"] = os.getloadavg()[0]
    fig["host_cpus"] = os.cpu_count()
    work = tempfile.mkdtemp(prefix="bpfhol-bench-")
    vm = vmlib.LabVM(work, a.guest)
    try:
        vm.up(provision=False)
        fig["vagrant_up_no_provision_s"] = vm.timings["up_s"]
        for n in ("first", "second"):
            t0 = time.time()
            try:
                out = vm.provision(timeout=a.provision_timeout)
            except AssertionError as e:  # a figure, not a verdict: note it and go on
                out = str(e)
                fig[f"playbook_{n}_error"] = out.splitlines()[0]
            fig[f"playbook_{n}_s"] = round(time.time() - t0, 1)
            fig[f"playbook_{n}_recap"] = vm.recap(out)
        attach = []
        for _ in range(3):
            r = vm.run("sudo -n python3 -c " + shlex_quote(ATTACH_PROBE), timeout=120)
            try:
                attach.append(json.loads(r.stdout.strip().splitlines()[-1])["attach_s"])
            except (ValueError, IndexError, KeyError):
                attach.append(None)
        fig["bpftrace_attach_s"] = [round(x, 2) if x is not None else None for x in attach]
        t0 = time.time()
        vm.run("true", timeout=60)
        fig["ssh_roundtrip_s"] = round(time.time() - t0, 2)
    finally:
        if a.keep:
            print(f"kept: VAGRANT_CWD={REPO / 'vagrant'} VAGRANT_DOTFILE_PATH={work}/.vagrant "
                  f"BPFHOL_VM_NAME={vm.name} vagrant ssh", file=sys.stderr)
        else:
            t0 = time.time()
            vm.destroy()
            fig["vagrant_destroy_s"] = round(time.time() - t0, 1)
            shutil.rmtree(work, ignore_errors=True)

    b = fig["box"]
    print(f"guest                      {fig['guest']} (kernel {b['kernel']}, box hash {b['hash']})")
    print(f"accelerator                {fig['accel']}   (host load at start {fig['host_load_1min']:.1f} on "
          f"{fig['host_cpus']} CPUs, at end {os.getloadavg()[0]:.1f})")
    print(f"box build                  {b['wall_s']} s ({'cached' if b['cached'] else 'built now'})")
    print(f"vagrant up (no provision)  {fig['vagrant_up_no_provision_s']} s")
    for n in ("first", "second"):
        rc = fig[f"playbook_{n}_recap"]
        print(f"playbook {n:6} run        {fig[f'playbook_{n}_s']} s  (changed={rc.get('changed')} "
              f"failed={rc.get('failed')}) {fig.get(f'playbook_{n}_error', '')}")
    print(f"bpftrace attach in VM      {fig['bpftrace_attach_s']} s (cold, warm, warm)")
    print(f"ssh round trip             {fig['ssh_roundtrip_s']} s")
    if "vagrant_destroy_s" in fig:
        print(f"vagrant destroy            {fig['vagrant_destroy_s']} s")
    if a.json:
        print(json.dumps(fig))


def shlex_quote(s):
    import shlex
    return shlex.quote(s)


if __name__ == "__main__":
    main()
