#!/usr/bin/env python3
"""Benchmark: grade one cohort of N real sshd hosts on loopback, three ways.

    .venv/bin/python bench/cohort.py [--sizes 1,10,50,100] [--methods parallel,sequential,ansible]
                                     [--seq-sample 10] [--window 3] [--markdown FILE]

  parallel    python -m grader grade --parallel N            (the grader as shipped)
  sequential  python -m grader grade --parallel 1            (timed on a sample of --seq-sample
                                                              students, extrapolated to N; said so)
  ansible     ansible all -f N -m copy (job.json) ; ansible all -f N -m shell (agent run, rm)
              the same agent job, each host's reply returned to the controller

The lab is a copy of tests/fixtures/labs/tracepoints with window_seconds = --window (3 s by
default), answered with its reference solutions (3 bpftrace scripts per student).  All hosts share
this machine's kernel and CPUs: the lab hosts' own work (300 bpftrace processes at N=100 on 2
cores) is in every method's wall time, so this measures time and cost, not verdicts.

Grader cost is the grader process alone: os.wait4() on it gives its CPU seconds and peak RSS
(ru_maxrss = VmHWM); it starts no children.  Run as root (sshd, bpftrace).  Never part of the tests.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from sshd_hosts import SSHD, SshFarm, SshHost, ensure_tracefs, install_lab_prefix, wait_port  # noqa: E402

TRACEPOINTS_LAB = REPO / "tests" / "fixtures" / "labs" / "tracepoints"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class PlainShellHost(SshHost):
    """sshd in a private mount namespace where root's ~/.bashrc is empty.  On this machine it runs
    `pyenv init` (about 0.5 CPU-s for every remote command, as bash sources ~/.bashrc under sshd);
    a lab VM's bpfhol-grader account has a plain shell.  Nothing outside that sshd sees the mask."""

    empty = None

    def start(self):
        boot = 'mount --bind "$0" /root/.bashrc && exec "$1" -D -e -f "$2"'
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", boot, self.empty,
                                      SSHD, str(self.workdir / "sshd_config")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "sshd.log", "ab"))
        if not wait_port(self.port, host=self.host):
            raise RuntimeError("sshd on %s:%d did not come up" % (self.host, self.port))
        return self


def add_host(farm, plain):
    host = farm.add()
    if plain and os.path.exists("/root/.bashrc"):
        host.stop()
        host.__class__ = PlainShellHost
        host.empty = str(farm.root / "empty_bashrc")
        Path(host.empty).touch()
        host.start()
    return host


def make_lab(root, window, with_answers=True):
    lab = Path(root) / "lab"
    shutil.copytree(TRACEPOINTS_LAB, lab)
    text = (lab / "lab.yaml").read_text()
    import re

    text = re.sub(r"(?m)^window_seconds: .*$", "window_seconds: %g" % window, text)
    (lab / "lab.yaml").write_text(text)
    answers = Path(root) / "answers"
    answers.mkdir()
    for p in (lab / "solutions").glob("q*.bt") if with_answers else []:
        shutil.copy(p, answers / p.name)
    return lab, answers


def cpu_jiffies():
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    return sum(vals), vals[3] + vals[4]          # total, idle + iowait


def run_grader(roster, lab, results, parallel):
    cmd = [sys.executable, "-m", "grader", "grade", str(roster), "--lab", str(lab), "--results", str(results),
           "--parallel", str(parallel), "--quiet", "--connect-timeout", "20"]
    t0 = time.monotonic()
    total0, idle0 = cpu_jiffies()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    # Sample VmHWM while it runs (a second opinion next to wait4's ru_maxrss).
    _, status, usage = os.wait4(proc.pid, os.WNOHANG)
    while _ == 0:
        try:
            with open("/proc/%d/status" % proc.pid) as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.2)
        _, status, usage = os.wait4(proc.pid, os.WNOHANG)
    wall = time.monotonic() - t0
    total1, idle1 = cpu_jiffies()
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    journal = [json.loads(x) for x in (Path(results) / "journal.jsonl").read_text().splitlines()]
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_kib": max(usage.ru_maxrss, peak),
            "exit": proc.returncode, "graded": sum(1 for r in journal if r["status"] == "graded"),
            "students": len(journal), "stderr": err[-500:],
            "machine_busy": 1 - (idle1 - idle0) / max(1, total1 - total0),
            "student_seconds": [r["seconds"] for r in journal],
            "errors": sorted({r["error"][:80] for r in journal if r["status"] != "graded"})[:3]}


def host_side_cpu(agent, lab_dir, answers, work):
    """CPU seconds one student's agent job costs a lab host (agent + 3 bpftrace + workload), run here
    directly and measured with wait4: N students on this machine need at least N x this / CPUs."""
    from grader.cohort import cohort_scripts
    from grader.grading import build_job
    from grader.labspec import load_lab
    from grader.roster import Entry

    lab = load_lab(str(lab_dir))
    job_dir = Path(tempfile.mkdtemp(prefix="bpfhol-job-", dir=work))
    (job_dir / "job.json").write_text(json.dumps(build_job(lab, cohort_scripts(lab, Entry(student="x",
                                                                                          answers=str(answers))))))
    costs = []
    for _ in range(3):
        proc = subprocess.Popen([agent, "run", str(job_dir / "job.json")], stdout=subprocess.DEVNULL)
        _, _, usage = os.wait4(proc.pid, 0)
        costs.append(usage.ru_utime + usage.ru_stime)
    return sorted(costs)[1]


def host_agents(prefix, n):
    """One install prefix per simulated host, each with a lock of its own (etc/lock-per-prefix): the agent
    allows one grading job per host, and hosts sharing this machine would otherwise share one lock and
    run one at a time, unlike real VMs.  (Their workloads see each other: this measures time, not verdicts.)"""
    agents = []
    for i in range(n):
        copy = Path("%s-%03d" % (prefix, i))
        if not copy.exists():
            shutil.copytree(prefix, copy, symlinks=True)
            (copy / "etc").mkdir(exist_ok=True)
            (copy / "etc" / "lock-per-prefix").write_text("benchmark: one lock per simulated host\n")
        agents.append(str(copy / "sbin" / "bpfhol-agent"))
    return agents


def write_roster(path, hosts, agents, answers):
    rows = ["student,host,port,user,key,agent,answers"]
    for i, h in enumerate(hosts):
        rows.append("s%03d,%s,%d,root,%s,%s,%s" % (i, h.host, h.port, h.key, agents[i], answers))
    Path(path).write_text("\n".join(rows) + "\n")
    return path


def wait_idle(prefix, timeout=120):
    """No agent of ours still running (so one method's stragglers never load the next)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    cmd = open("/proc/%s/cmdline" % d, "rb").read()
                except OSError:
                    continue
                if str(prefix).encode() in cmd and b"bpfhol-agent" in cmd:
                    busy = True
                    break
        if not busy:
            return
        time.sleep(0.5)


def run_ansible(work, hosts, agents, lab_dir, answers):
    from grader.cohort import cohort_scripts
    from grader.grading import build_job
    from grader.labspec import load_lab
    from grader.roster import Entry

    lab = load_lab(str(lab_dir))
    jobs = Path(work) / "jobs"
    shutil.rmtree(jobs, ignore_errors=True)
    jobs.mkdir()
    inv = ["[lab]"]
    for i, h in enumerate(hosts):
        name = "s%03d" % i
        # One job per host, as the grader makes: each its own randomized workload file.
        job = build_job(lab, cohort_scripts(lab, Entry(student=name, answers=str(answers))))
        (jobs / (name + ".json")).write_text(json.dumps(job))
        inv.append("%s ansible_host=%s ansible_port=%d ansible_user=root ansible_ssh_private_key_file=%s "
                   "ansible_python_interpreter=/usr/bin/python3 bpfhol_agent=%s" % (name, h.host, h.port, h.key,
                                                                                  agents[i]))
    (Path(work) / "inventory").write_text("\n".join(inv) + "\n")
    cfg = Path(work) / "ansible.cfg"
    cfg.write_text("[defaults]\nhost_key_checking = False\nretry_files_enabled = False\ninterpreter_python = "
                   "/usr/bin/python3\nforks = %d\ntimeout = 30\n[ssh_connection]\npipelining = True\n"
                   "ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null "
                   "-o StrictHostKeyChecking=no\ncontrol_path_dir = %s/cp\n" % (len(hosts), work))
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOCAL_TEMP=str(Path(work) / "atmp"),
               ANSIBLE_HOME=str(Path(work) / "ahome"))
    ansible = str(Path(sys.executable).parent / "ansible")
    n = str(len(hosts))
    remote = "/tmp/bpfhol-ansible-{{ inventory_hostname }}.json"
    steps = [
        [ansible, "all", "-i", "inventory", "-f", n, "-m", "copy", "-a",
         "src=%s/{{ inventory_hostname }}.json dest=%s mode=0600" % (jobs, remote)],
        [ansible, "all", "-i", "inventory", "-f", n, "-m", "shell", "-a",
         "{{ bpfhol_agent }} run %s; rc=$?; rm -f %s; exit $rc" % (remote, remote)],
    ]
    t0 = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    outputs = []
    for step in steps:
        proc = subprocess.run(step, cwd=work, env=env, capture_output=True, timeout=1800)
        outputs.append(proc.stdout)
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ok = 0
    try:
        data = json.loads(outputs[-1])
        for res in data["plays"][0]["tasks"][0]["hosts"].values():
            try:
                reply = json.loads(res.get("stdout", "").strip().splitlines()[-1])
                ok += bool(reply.get("ok"))
            except (ValueError, IndexError):
                pass
    except (ValueError, KeyError, IndexError):
        pass
    return {"wall": wall, "cpu": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), "replies": ok}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,10,50,100")
    ap.add_argument("--methods", default="parallel,sequential,ansible")
    ap.add_argument("--seq-sample", type=int, default=10, help="students timed sequentially, extrapolated to N")
    ap.add_argument("--window", type=float, default=3)
    ap.add_argument("--answers", choices=["reference", "empty"], default="reference",
                    help="reference: the 3 reference scripts (3 bpftrace per student); empty: no scripts, so "
                    "the agent runs only the workload: what is left is the transport, i.e. the grader's own scaling")
    ap.add_argument("--keep-bashrc", action="store_true",
                    help="let the hosts' root shell source /root/.bashrc (pyenv init here: ~0.5 s per command)")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    if os.geteuid() != 0:
        sys.exit("bench/cohort.py: run as root (sshd, bpftrace)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    ensure_tracefs()
    load_before = open("/proc/loadavg").read().split()[:3]
    work = Path(tempfile.mkdtemp(prefix="bpfhol-cohortbench-"))
    (work / "farm").mkdir()
    farm = SshFarm(work / "farm")
    rows = []
    host_cpu = float("nan")
    try:
        agent = str(install_lab_prefix(work / "prefix"))
        lab, answers = make_lab(work, args.window, args.answers == "reference")
        log("starting %d sshd hosts ..." % max(sizes))
        hosts = [add_host(farm, not args.keep_bashrc) for _ in range(max(sizes))]
        # Warm-up, untimed: the first bpftrace on a machine pays for reading BTF and the like (~3 s);
        # every timed run then starts warm, the same for each method.
        agents = host_agents(work / "prefix", max(sizes))
        run_grader(write_roster(work / "warm.csv", hosts[:1], agents, answers), lab, work / "warm", 1)
        host_cpu = host_side_cpu(agent, lab, answers, work)
        log("one student's job costs the lab host %.2f CPU-s" % host_cpu)
        for n in sizes:
            row = {"n": n}
            run_dir = work / ("n%d" % n)
            run_dir.mkdir()
            if "parallel" in methods:
                wait_idle(work)
                roster = write_roster(run_dir / "roster.csv", hosts[:n], agents, answers)
                log("N=%d parallel ..." % n)
                row["parallel"] = run_grader(roster, lab, run_dir / "par", n)
                log("  %s" % {k: v for k, v in row["parallel"].items() if k != "stderr"})
            if "sequential" in methods:
                wait_idle(work)
                k = min(n, args.seq_sample)
                roster = write_roster(run_dir / "seq.csv", hosts[:k], agents, answers)
                log("N=%d sequential (%d students timed) ..." % (n, k))
                seq = run_grader(roster, lab, run_dir / "seq", 1)
                seq["sampled"] = k
                seq["per_student"] = seq["wall"] / k
                seq["wall_est"] = seq["per_student"] * n
                row["sequential"] = seq
                log("  %s" % {k2: v for k2, v in seq.items() if k2 != "stderr"})
            if "ansible" in methods:
                wait_idle(work)
                log("N=%d ansible ..." % n)
                row["ansible"] = run_ansible(run_dir, hosts[:n], agents, lab, answers)
                log("  %s" % row["ansible"])
            rows.append(row)
    finally:
        farm.close()
        if not args.json:
            shutil.rmtree(work, ignore_errors=True)
    table = render(rows, args)
    table += ("host side: one student's agent job (agent, %s, kprobeme; median of 3) costs %.2f CPU-s, so N students "
              "on this machine's %d CPUs need at least N x %.2f / %d s whatever the grader does\n"
              % ("3 x bpftrace" if args.answers == "reference" else "no bpftrace", host_cpu, os.cpu_count(), host_cpu,
                 os.cpu_count()))
    table += "machine: %d CPUs, load average before the run %s (other work on this machine shares the CPUs)\n" % (
        os.cpu_count(), load_before)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def render(rows, args):
    w = args.window
    lines = ["| N | parallel s | sequential s | Ansible s | seq/par | Ansible/par | grader CPU-s/host | "
             "peak RSS MiB (per host) | overhead/student s (seq) | machine CPU busy (par) | graded |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n = r["n"]
        p, s, a = r.get("parallel"), r.get("sequential"), r.get("ansible")
        seq = ("%.1f%s" % (s["wall_est"], " (est. from %d)" % s["sampled"] if s["sampled"] < n else "")) if s else "-"
        lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            n, "%.1f" % p["wall"] if p else "-", seq, "%.1f" % a["wall"] if a else "-",
            "%.1f×" % (s["wall_est"] / p["wall"]) if p and s else "-",
            "%.2f×" % (a["wall"] / p["wall"]) if p and a else "-",
            "%.3f" % (p["cpu"] / n) if p else "-",
            "%.1f (%.2f)" % (p["rss_kib"] / 1024, p["rss_kib"] / 1024 / n) if p else "-",
            "%.2f" % (s["per_student"] - w) if s else "-",
            "%.0f%%" % (100 * p["machine_busy"]) if p else "-",
            "%d/%d" % (p["graded"], n) if p else "-"))
    lines.append("")
    lines.append("answers: %s; window %gs; sequential beyond %d students is extrapolated from a timed sample; "
                 "Ansible replies ok: %s" % (args.answers, w, args.seq_sample,
                                             ", ".join("N=%d: %s" % (r["n"], r["ansible"]["replies"])
                                                       for r in rows if r.get("ansible"))))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
