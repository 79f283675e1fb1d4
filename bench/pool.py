#!/usr/bin/env python3
"""Benchmark: throughput of the instructor's pool of lab VMs (issue 30 item 4).

    .venv/bin/python bench/pool.py [--students 6] [--hosts 1,2,3] [--lab uprobes]
                                   [--command pool|submissions] [--json FILE] [--markdown FILE]

Every grade that counts passes through the pool, one student per VM at a time:
`bpfhol-grade grade ROSTER --pool VMS` (collect from the students' VMs, then grade on the pool) or
`bpfhol-grade submissions SUBMISSIONS/ --vms VMS`.  This grades the same N students with 1, 2, 3 pool
hosts and prints, as figures and ratios (never pass/fail):

  * seconds per student on one pool host against that host's FLOOR measured in the same run: the lab's
    window plus the slowest script's attach time (reply.timing.attach - timing.workload_ready, read from
    each student's evidence), and their ratio (issue 30's goal: within 1.3x);
  * the pool's speed-up with k hosts for the same N students, and k x T(k) / T(1), the ratio to the
    ideal k-fold (goal: within 1.2x);
  * where the rest of each student's time goes, per phase: SSH connect, mktemp, upload, the agent's own
    phases (reply.timing), the reply, cleanup, judging, the journal.

The grader runs in this process (grader.cli.main, exactly the command line an instructor types) with
timers wrapped around its SSH backend's steps; nothing in grader/ is changed.

Simulated hosts: real sshd on loopback, each in a private mount namespace where
  - a copy of the lab's install prefix is mounted at one common path (so every host runs "its own"
    uprobeme at the same path, as VMs do, and a uprobe on that path fires for that host's runs only),
  - a copy of libc is mounted over libc (a `uprobe:libc:strtol` probe is per inode: without the copy,
    u4 on one host sees every other host's strtol calls: measured here on 2026-12-07),
  - /run is a private tmpfs (the agent's lock, work and lab folders: one job per host, as on a VM),
  - root's ~/.bashrc is empty (here it runs `pyenv init`, ~0.5 s per remote command; a lab VM's
    bpfhol-grader account has a plain shell).
They still share this machine's kernel and CPUs: k hosts' bpftrace, workloads and agents run on the
same cores, so the k-host figures measure this machine's CPUs too (the table says so).

The reference answers (labs/<lab>/solutions/*.bt, /opt/bpfhol/ rewritten to the common path) are every
student's answers, so every result should be full marks: the score column checks the hosts are
isolated.  Run as root (sshd, mount namespaces, bpftrace).  Never part of the tests.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from sshd_hosts import SSHD, SshFarm, SshHost, ensure_tracefs, install_lab_prefix, wait_port  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def libc_path():
    """The libc file bpftrace's `uprobe:libc:...` resolves to (ld.so's cache), its real path."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=20).stdout
    found = [line for line in out.splitlines() if line.strip().startswith("libc.so.6 ")]
    native = [line for line in found if "x86-64" in line] or found      # a multiarch host lists others too
    if native:
        return os.path.realpath(native[0].split("=>")[-1].strip())
    raise SystemExit("bench/pool.py: libc.so.6 not in ldconfig -p; cannot isolate uprobe:libc per host")


def isolated(prefix, common, libc_copy, libc, empty_bashrc, argv):
    """argv run in a private mount namespace: ``prefix`` mounted at ``common``, ``libc_copy`` over ``libc``, a
    private tmpfs on /run (with /run/sshd for sshd), ``empty_bashrc`` over root's ~/.bashrc when there is one."""
    boot = ('set -e; mount --bind "$0" "$1"; mount -t tmpfs -o mode=0755 bench-run /run; mkdir -p /run/sshd; '
            'mount --bind "$2" "$3"; if [ -e /root/.bashrc ]; then mount --bind "$4" /root/.bashrc; fi; '
            'shift 4; exec "$@"')
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", boot, str(prefix), str(common), str(libc_copy),
            str(libc), str(empty_bashrc)] + [str(a) for a in argv]


class IsolatedHost(SshHost):
    """An sshd whose processes see their own install prefix at ``common``, their own libc inode, a private
    /run and an empty ~/.bashrc: a lab VM as far as paths, uprobes on files and the agent's lock go."""

    prefix = common = libc_copy = libc = empty_bashrc = None

    def start(self):
        self.proc = subprocess.Popen(
            isolated(self.prefix, self.common, self.libc_copy, self.libc, self.empty_bashrc,
                     [SSHD, "-D", "-e", "-f", self.workdir / "sshd_config"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.workdir / "sshd.log", "ab"))
        if not wait_port(self.port, host=self.host):
            raise RuntimeError("sshd on %s:%d did not come up; see %s" % (self.host, self.port,
                                                                          self.workdir / "sshd.log"))
        return self

    def run_isolated(self, argv, timeout):
        """A command on this simulated VM (its namespace as set up at start), outside sshd."""
        return subprocess.run(isolated(self.prefix, self.common, self.libc_copy, self.libc, self.empty_bashrc, argv),
                              capture_output=True, text=True, timeout=timeout)


def add_isolated_host(farm, work, shared_prefix, common, libc):
    """One more simulated VM: a copy of the install prefix and of libc of its own, started in its namespace."""
    host = farm.add()
    host.stop()
    own = Path(work) / "hosts" / str(host.port)
    own.mkdir(parents=True)
    shutil.copytree(shared_prefix, own / "prefix", symlinks=True)
    shutil.copy2(libc, own / "libc.so.6")
    (own / "empty_bashrc").touch()
    host.__class__ = IsolatedHost
    host.prefix, host.common, host.libc_copy, host.libc = own / "prefix", common, own / "libc.so.6", libc
    host.empty_bashrc = own / "empty_bashrc"
    host.start()
    return host


# -- timers around the grader's steps -------------------------------------------------------------------------


class Timers:
    """Per-student phase timings, gathered by wrapping the grader's SSH backend, grading and journal calls.
    Each backend object carries its own record (one student per backend), so threads never mix records."""

    def __init__(self):
        self.lock = threading.Lock()
        self.students = {}          # student -> {phase: seconds, ...}
        self.phases = {}            # name -> wall seconds of a whole phase (collect, grade on pool, command)
        self.local = threading.local()

    def install(self):
        from grader import cohort, collect, grading
        from grader.backend import ssh
        from grader.journal import Journal

        timers = self
        backend_cls = ssh.SSHBackend
        orig_connect, orig_exec = backend_cls.connect, backend_cls.exec
        orig_upload = getattr(backend_cls, "_upload", None)      # gone since agent 6 (the job goes on stdin)
        orig_grade, orig_evaluate, orig_record = grading.grade, grading.evaluate, Journal.record
        orig_pool, orig_collect = cohort.grade_submissions, collect.collect_cohort

        def rec(backend):
            if not hasattr(backend, "_bench"):
                backend._bench = {}
            return backend._bench

        def add(record, key, seconds):
            record[key] = record.get(key, 0.0) + seconds

        def connect(self):
            t0 = time.monotonic()
            try:
                return orig_connect(self)
            finally:
                add(rec(self), "ssh_connect", time.monotonic() - t0)

        def exec_(self, command, *a, **kw):
            t0 = time.monotonic()
            try:
                return orig_exec(self, command, *a, **kw)
            finally:
                kind = ("mktemp" if command.startswith("mktemp") else "cleanup" if command.startswith("rm -rf")
                        else "agent_exec" if " run " in command else "collect" if " collect " in command
                        else "other_exec")
                add(rec(self), kind, time.monotonic() - t0)

        def upload(self, *a, **kw):
            t0 = time.monotonic()
            try:
                return orig_upload(self, *a, **kw)
            finally:
                add(rec(self), "upload", time.monotonic() - t0)

        def grade(backend, lab, student, *a, **kw):
            record = rec(backend)
            timers.local.record = record
            t0 = time.monotonic()
            try:
                result = orig_grade(backend, lab, student, *a, **kw)
            finally:
                record["grade_call"] = time.monotonic() - t0
                timers.local.record = None
            if student != "canary":
                doc = getattr(result, "evidence_doc", None) or {}
                reply = doc.get("reply") or {}
                record["timing"] = dict(reply.get("timing") or {})
                record["attach_seconds"] = [s.get("attach_seconds") for s in reply.get("scripts") or []
                                            if isinstance(s, dict)]
                record["host"] = backend.name
                record["window"] = lab.window
                with timers.lock:
                    timers.students[student] = record
            return result

        def evaluate(*a, **kw):
            t0 = time.monotonic()
            try:
                return orig_evaluate(*a, **kw)
            finally:
                record = getattr(timers.local, "record", None)
                if record is not None:
                    add(record, "judge", time.monotonic() - t0)

        def record(journal, result, *a, **kw):
            t0 = time.monotonic()
            try:
                return orig_record(journal, result, *a, **kw)
            finally:
                t1 = time.monotonic()
                with timers.lock:
                    entry = timers.students.setdefault(result.student, {})
                    entry["journal"] = t1 - t0
                    entry["finished_at"] = t1
                    entry["status"], entry["score"], entry["max_score"] = result.status, result.score, result.max_score
                    entry["error"] = result.error

        def timed(name, fn):
            def wrapper(*a, **kw):
                t0 = time.monotonic()
                try:
                    return fn(*a, **kw)
                finally:
                    timers.phases[name] = time.monotonic() - t0
                    timers.phases[name + "_started"] = t0
            return wrapper

        backend_cls.connect, backend_cls.exec = connect, exec_
        if orig_upload is not None:
            backend_cls._upload = upload
        grading.grade, grading.evaluate, Journal.record = grade, evaluate, record
        cohort.grade_submissions = timed("pool", orig_pool)
        collect.collect_cohort = timed("collect", orig_collect)
        # grade_submissions calls grading.grade through the module, so the wrapper above sees every student.

    def reset(self):
        self.students, self.phases = {}, {}


# -- one run --------------------------------------------------------------------------------------------------


def yaml_rows(rows):
    import yaml

    return yaml.safe_dump({"students": rows}, sort_keys=False)


def write_inputs(run_dir, n, pool_hosts, student_host, agent, answers, command):
    run_dir.mkdir(parents=True)
    vms = [{"student": "labvm%d" % (i + 1), "host": h.host, "port": h.port, "user": "root", "key": h.key,
            "agent": agent} for i, h in enumerate(pool_hosts)]
    (run_dir / "pool.yml").write_text(yaml_rows(vms))
    if command == "submissions":
        subs = run_dir / "SUBMISSIONS"
        for i in range(n):
            shutil.copytree(answers, subs / ("s%03d" % i))
        return subs
    rows = []
    for i in range(n):
        folder = run_dir / "answers" / ("s%03d" % i)
        shutil.copytree(answers, folder)
        rows.append({"student": "s%03d" % i, "host": student_host.host, "port": student_host.port, "user": "root",
                     "key": student_host.key, "agent": agent, "answers": str(folder)})
    (run_dir / "roster.yml").write_text(yaml_rows(rows))
    return run_dir / "roster.yml"


def run_grader(timers, run_dir, what, lab, command):
    from grader.cli import main as grader_main

    common = ["--lab", lab, "--results", str(run_dir / "results"), "--quiet", "--known-hosts",
              str(run_dir / "known_hosts"), "--connect-timeout", "20"]
    if command == "submissions":
        argv = ["submissions", str(what), "--vms", str(run_dir / "pool.yml")] + common
    else:
        argv = ["grade", str(what), "--pool", str(run_dir / "pool.yml")] + common
    timers.reset()
    t0 = time.monotonic()
    code = grader_main(argv)
    wall = time.monotonic() - t0
    return {"argv": argv, "exit": code, "wall": wall, "phases": dict(timers.phases),
            "students": {s: dict(r) for s, r in timers.students.items()}}


# -- inside the agent: its phases, one by one ------------------------------------------------------------------

# Run on a simulated VM: loads the installed agent as a module, wraps its phase functions with timers, runs one
# job as `bpfhol-agent run` would, and prints {phase: seconds}.  The agent file is not changed.
AGENT_PHASES_RUNNER = r"""
import importlib.machinery, importlib.util, json, sys, threading, time
agent_path, job_path = sys.argv[1], sys.argv[2]
t_start = time.monotonic()
loader = importlib.machinery.SourceFileLoader("bpfhol_agent_bench", agent_path)
agent = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
loader.exec_module(agent)
spent = {"import": time.monotonic() - t_start}
def wrap(name):
    fn = getattr(agent, name)
    def timed(*a, **kw):
        t0 = time.monotonic()
        try:
            return fn(*a, **kw)
        finally:
            spent[name] = spent.get(name, 0.0) + time.monotonic() - t0
    setattr(agent, name, timed)
stop_scripts = agent.stop_scripts
def stop_and_watch(runs, *a, **kw):
    # each bpftrace's exit after the SIGINT, seen by polling (Popen.poll is safe beside the agent's wait)
    t0, exits, done = time.monotonic(), {}, threading.Event()
    def watch():
        while not done.is_set():
            for run in runs:
                if run.name not in exits and run.proc.poll() is not None:
                    exits[run.name] = round(time.monotonic() - t0, 3)
            time.sleep(0.005)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        return stop_scripts(runs, *a, **kw)
    finally:
        done.set()
        watcher.join()
        spent["script_exit"] = exits
agent.stop_scripts = stop_and_watch
for name in sys.argv[3].split(","):
    wrap(name)
t0 = time.monotonic()
reply = agent.run_job(job_path)
spent["run_job"] = time.monotonic() - t0
t0 = time.monotonic()
text = json.dumps(reply)
spent["reply_json"] = time.monotonic() - t0
spent["reply_bytes"] = len(text)
spent["timing"] = reply.get("timing")
print(json.dumps(spent))
"""
AGENT_FUNCTIONS = ["check_job", "hold_lock", "clear_leftovers", "stage_scripts", "make_lab_files",
                   "_stop_menu_services", "start_workload", "start_scripts", "attach_barrier", "release_workload",
                   "watch_window", "stop_scripts", "stop_workload", "read_truth", "_start_units", "basic_facts"]


def agent_phases(host, work, lab_name, answers, common, runs):
    """Median seconds of each agent phase over ``runs`` jobs run directly on ``host``'s namespace (no SSH)."""
    from grader.grading import build_job
    from grader.labspec import load_lab

    lab = load_lab(lab_name)
    folder = Path(work) / "agent-phases"
    folder.mkdir()
    samples = []
    for i in range(runs):
        job = build_job(lab, {ex.id: ("path", str(answers / ex.script)) for ex in lab.exercises})
        job_path = folder / ("job-%d.json" % i)
        job_path.write_text(json.dumps(job))
        proc = host.run_isolated(["python3", "-c", AGENT_PHASES_RUNNER, common / "sbin" / "bpfhol-agent", job_path,
                                  ",".join(AGENT_FUNCTIONS)], timeout=300)
        try:
            samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            log("agent phases: run %d gave no timings: %s" % (i, (proc.stderr or proc.stdout)[-300:]))
    keys = [k for k in ["import"] + AGENT_FUNCTIONS + ["run_job", "reply_json", "reply_bytes"]
            if any(k in s for s in samples)]
    out = {k: med(s.get(k) for s in samples) for k in keys}
    names = sorted({name for s in samples for name in s.get("script_exit") or {}})
    out["script_exit"] = {name: med((s.get("script_exit") or {}).get(name) for s in samples) for name in names}
    return out, len(samples)


# -- figures --------------------------------------------------------------------------------------------------


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def per_student_phases(run):
    """Each student's wall time on its pool host (from its host's previous finish, or the pool's start, to its
    own finish) split into phases; 'other' is what no timer covered (the pool's loop, backend set-up/close)."""
    start = run["phases"].get("pool_started")
    by_host = {}
    for student, r in run["students"].items():
        if "timing" in r:
            by_host.setdefault(r["host"], []).append((r["finished_at"], student, r))
    rows = []
    for host, items in by_host.items():
        prev = start
        for finished, student, r in sorted(items):
            t = r["timing"]
            agent_total = t.get("total", 0.0)
            row = {
                "student": student, "host": host, "wall": finished - prev,
                "ssh_connect": r.get("ssh_connect", 0.0), "mktemp": r.get("mktemp", 0.0),
                "upload": r.get("upload", 0.0),
                "agent_lock_wait": t.get("lock_wait", 0.0),
                "agent_setup": t.get("workload_ready", 0.0) - t.get("lock_wait", 0.0),
                "agent_attach": t.get("attach", 0.0) - t.get("workload_ready", 0.0),
                "agent_window": r["window"],
                "agent_stop": agent_total - t.get("attach", 0.0) - r["window"],
                "agent_start_facts_reply": r.get("agent_exec", 0.0) - agent_total,
                "cleanup": r.get("cleanup", 0.0), "judge": r.get("judge", 0.0),
                "job_and_evidence": (r.get("grade_call", 0.0) - r.get("mktemp", 0.0) - r.get("upload", 0.0)
                                     - r.get("agent_exec", 0.0) - r.get("cleanup", 0.0) - r.get("judge", 0.0)
                                     - r.get("other_exec", 0.0)),
                "journal": r.get("journal", 0.0),
                "floor": r["window"] + (t.get("attach", 0.0) - t.get("workload_ready", 0.0)),
                "slowest_script_attach": max([a for a in r.get("attach_seconds") or [] if a is not None],
                                             default=float("nan")),
            }
            covered = sum(row[k] for k in PHASES if k != "other")
            row["other"] = row["wall"] - covered
            rows.append(row)
            prev = finished
    return rows


PHASES = ["ssh_connect", "mktemp", "upload", "agent_lock_wait", "agent_setup", "agent_attach", "agent_window",
          "agent_stop", "agent_start_facts_reply", "cleanup", "judge", "job_and_evidence", "journal", "other"]
PHASE_TEXT = {
    "ssh_connect": "grader: SSH login to the pool VM (paramiko: TCP, key exchange, auth)",
    "mktemp": "grader: `mktemp -d` on the VM (one SSH exec)",
    "upload": "grader: SFTP of job.json and the scripts",
    "agent_lock_wait": "agent: waiting for the host's lock (timing.lock_wait)",
    "agent_setup": "agent: check the job, stage scripts, lab files, start the held workload (workload_ready - lock_wait)",
    "agent_attach": "agent: bpftrace launch to the slowest script attached (attach - workload_ready) [floor]",
    "agent_window": "agent: the lab's window [floor]",
    "agent_stop": "agent: past the window: last events, SIGINT, maps printed, workload ended, truth read (total - attach - window)",
    "agent_start_facts_reply": "agent exec beyond timing.total: python start-up, facts (bpftrace --version), reply over SSH",
    "cleanup": "grader: `rm -rf` of the work dir on the VM (one SSH exec)",
    "judge": "grader: judging the reply against the truth (grading.evaluate)",
    "job_and_evidence": "grader: building the job, the evidence document",
    "journal": "grader: journal line, evidence file written",
    "other": "not covered by a timer: the pool's loop, backend set-up and close (a stale-job check, if any)",
}


def summarize(runs, args):
    """The three tables, as markdown text."""
    out = []
    base = runs[min(runs)]
    one = per_student_phases(base)
    per_student = base["phases"]["pool"] * min(runs) / args.students     # one host's share: k hosts, N students
    floor = statistics.mean(r["floor"] for r in one) if one else float("nan")
    out.append("### One pool host: seconds per student against its floor (k=%d run, %d students)\n" % (min(runs),
                                                                                                       args.students))
    out.append("| figure | seconds |")
    out.append("|---|---|")
    out.append("| pool phase wall x hosts / students (the throughput of one host) | %.2f |" % per_student)
    out.append("| floor: window %g s + slowest script's attach (mean of the run's students; min %.2f, max %.2f) | %.2f |"
               % (one[0]["agent_window"] if one else float("nan"),
                  min(r["floor"] for r in one) if one else float("nan"),
                  max(r["floor"] for r in one) if one else float("nan"), floor))
    out.append("| **ratio to the floor** (goal ≤ 1.3) | **%.2f×** |" % (per_student / floor))
    out.append("| above the floor per student | %.2f |" % (per_student - floor))
    if base["phases"].get("collect") is not None:
        out.append("| collection from the students' VMs, whole cohort (before the pool starts; not in the "
                   "per-student figure) | %.2f |" % base["phases"]["collect"])
    out.append("| whole command (load lab, collect, pool, reports) / students | %.2f |" % (base["wall"] / args.students))
    out.append("")
    out.append("### The pool: speed-up with k hosts for the same %d students\n" % args.students)
    out.append("Loopback hosts share this machine's %d CPUs: k hosts' bpftrace, workloads and agents run on the same "
               "cores, unlike k VMs.\n" % os.cpu_count())
    out.append("| k hosts | pool phase s | speed-up T(1)/T(k) | k·T(k)/T(1) (ideal 1.0, goal ≤ 1.2) | whole command s "
               "| s per student per host | machine CPU busy | graded, full marks |")
    out.append("|---|---|---|---|---|---|---|---|")
    t1 = base["phases"]["pool"] * min(runs)      # T(1) (the base is the smallest k; k=1 normally)
    for k in sorted(runs):
        run = runs[k]
        tk = run["phases"]["pool"]
        graded = [r for r in run["students"].values() if r.get("status") == "graded"]
        full = [r for r in graded if r.get("score") == r.get("max_score")]
        out.append("| %d | %.1f | %.2f× | %.2f | %.1f | %.2f | %.0f%% | %d/%d, %d/%d |" % (
            k, tk, t1 / tk, k * tk / t1, run["wall"], tk * k / args.students, 100 * run["cpu_busy"],
            len(graded), args.students, len(full), args.students))
    out.append("")
    out.append("### Where each student's time on a pool host goes (medians over all runs' students, s)\n")
    rows = [r for k in sorted(runs) for r in per_student_phases(runs[k])]
    by_k = {k: per_student_phases(runs[k]) for k in sorted(runs)}
    out.append("| phase | " + " | ".join("k=%d" % k for k in sorted(runs)) + " | what |")
    out.append("|---|" + "---|" * len(runs) + "---|")
    for phase in ["wall"] + PHASES + ["floor"]:
        text = {"wall": "**a student's wall time on its host**", "floor": "floor (window + attach)"}.get(
            phase, PHASE_TEXT.get(phase, ""))
        out.append("| %s | %s | %s |" % (phase, " | ".join("%.2f" % med(r[phase] for r in by_k[k])
                                                           for k in sorted(runs)), text))
    out.append("")
    out.append("Slowest script's own attach time (bpftrace launch to attached, per student, median): %s"
               % ", ".join("k=%d: %.2f s" % (k, med(r["slowest_script_attach"] for r in by_k[k])) for k in sorted(runs)))
    out.append("")
    del rows
    return "\n".join(out) + "\n"


AGENT_FUNCTION_TEXT = {
    "import": "python3 loading the agent module (not in timing.total; before it: the interpreter's start)",
    "check_job": "reading and checking job.json",
    "hold_lock": "taking the host's lock (free here)",
    "clear_leftovers": "looking for a killed job's leftovers",
    "stage_scripts": "reading, checking and writing the scripts",
    "make_lab_files": "the lab's files and decoy",
    "_stop_menu_services": "stopping the menu's workloads (systemctl; none here)",
    "start_workload": "starting the held workload, waiting for its first notice",
    "start_scripts": "launching bpftrace for each script",
    "attach_barrier": "waiting until every script attached [floor]",
    "release_workload": "releasing the workload",
    "watch_window": "the window, until the workload's loop ends, +0.3 s for the last events [floor: the window]",
    "stop_scripts": "SIGINT, END probes, maps printed, bpftrace exits",
    "stop_workload": "the workload ended, its truth log written",
    "read_truth": "reading the truth log",
    "_start_units": "restarting the menu's workloads (none here)",
    "basic_facts": "the facts: `bpftrace --version` and a few files (after timing.total)",
    "run_job": "all of run_job",
    "reply_json": "the reply as JSON text",
    "reply_bytes": "reply size, bytes",
}


def render_agent_phases(inside, n):
    lines = ["", "### Inside one agent job: its phase functions timed (median of %d jobs run directly on a pool "
             "host, no SSH)" % n, "", "| agent function | seconds | what |", "|---|---|---|"]
    for k, v in inside.items():
        if k == "script_exit":
            continue
        lines.append("| %s | %s | %s |" % (k, "%d" % v if k == "reply_bytes" else "%.3f" % v,
                                           AGENT_FUNCTION_TEXT.get(k, "")))
    if inside.get("script_exit"):
        lines.append("")
        lines.append("Each bpftrace's exit after the SIGINT (median, s): " + ", ".join(
            "%s %.3f" % kv for kv in sorted(inside["script_exit"].items())))
    return "\n".join(lines) + "\n\n"


# -- the same figures from a results folder graded on real VMs ------------------------------------------------


def results_figures(results_dir):
    """Figures from a results folder of `grade --pool` or `submissions` run on real lab VMs (no grader timers
    there): each student's wall time on its VM is the gap between its graded_at and the previous student's on
    that VM (the first student of each VM has none and is left out of the wall figures); the grader's own
    `seconds` (job built, mktemp, upload, agent, cleanup, judging; not the SSH login) and the agent's
    reply.timing split it."""
    results = Path(results_dir)
    journal = [json.loads(line) for line in (results / "journal.jsonl").read_text().splitlines() if line.strip()]
    by_host = {}
    for row in journal:
        if row.get("status") == "graded" and row.get("evidence"):
            by_host.setdefault(row["host"], []).append(row)
    lines = []
    for host, rows in sorted(by_host.items()):
        rows.sort(key=lambda r: r["graded_at"])
        table = []
        for i, row in enumerate(rows):
            found = sorted(results.glob("students/*/%s" % Path(row["evidence"]).name))
            if not found:
                continue
            doc = json.loads(found[0].read_text())
            reply = doc.get("reply") or {}
            t = reply.get("timing") or {}
            window = float((doc.get("job") or {}).get("window") or 0)
            facts = reply.get("facts") or {}
            attach = t.get("attach", 0.0) - t.get("workload_ready", 0.0)
            table.append({
                "student": row["student"], "lab": row.get("lab"), "window": window,
                "kernel": facts.get("kernel"), "arch": facts.get("arch"), "bpftrace": facts.get("bpftrace"),
                "wall": row["graded_at"] - rows[i - 1]["graded_at"] if i else None,
                "seconds": row["seconds"], "floor": window + attach, "attach": attach,
                "setup": t.get("workload_ready", 0.0), "stop": t.get("total", 0.0) - t.get("attach", 0.0) - window,
                "beyond_agent": row["seconds"] - t.get("total", 0.0),
                "login_journal": (row["graded_at"] - rows[i - 1]["graded_at"] - row["seconds"]) if i else None,
            })
        timed = [r for r in table if r["wall"] is not None]
        if not table:
            continue
        first = table[0]
        lines.append("%s: %d students graded (%s lab, window %g s; %s %s, bpftrace %s)\n" % (
            host, len(table), first["lab"], first["window"], first["kernel"], first["arch"], first["bpftrace"]))
        lines.append("| figure (median over the VM's students) | seconds |")
        lines.append("|---|---|")
        for key, text in (("wall", "a student's wall time on the VM (graded_at to graded_at)"),
                          ("floor", "floor: window + slowest script's attach"),
                          ("attach", "of which the slowest script's attach (timing.attach - workload_ready)"),
                          ("setup", "agent: lock, job, scripts staged, workload started (timing.workload_ready)"),
                          ("stop", "agent: past the window to its end (total - attach - window)"),
                          ("beyond_agent", "grader seconds beyond timing.total: mktemp, upload, agent start-up, facts, "
                                           "reply, cleanup, judging"),
                          ("login_journal", "wall beyond the grader's seconds: SSH login, journal, the pool's loop")):
            value = med(r[key] for r in table)
            lines.append("| %s | %s |" % (text, "n/a (one student)" if value != value else "%.2f" % value))
        if timed:
            lines.append("| **sum of walls / sum of floors** (%d students after the first) | **%.2f×** |" % (
                len(timed), sum(r["wall"] for r in timed) / sum(r["floor"] for r in timed)))
            lines.append("| the same without the attach in the floor: sum of walls / (students x window) | %.2f× |" % (
                sum(r["wall"] for r in timed) / sum(r["window"] for r in timed)))
        lines.append("")
    return "\n".join(lines) + "\n"


def cpu_jiffies():
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    return sum(vals), vals[3] + vals[4]


def host_costs(n=3):
    """Fixed costs the agent pays on every job that are not in its timing: `bpftrace --version` (facts) and a
    python3 start-up, measured here directly (median of n)."""
    def timed(cmd):
        t0 = time.monotonic()
        subprocess.run(cmd, capture_output=True, timeout=60)
        return time.monotonic() - t0

    return {"bpftrace_version": med([timed(["bpftrace", "--version"]) for _ in range(n)]),
            "python3_start": med([timed(["python3", "-c", "pass"]) for _ in range(n)]),
            "python3_import_agent": med([timed(["python3", "-c", "import sys; sys.path.insert(0, %r); import agent"
                                                % str(REPO / "grader")]) for _ in range(n)])}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=6, help="students graded in each run (default 6)")
    ap.add_argument("--hosts", default="1,2,3", help="pool sizes to time, comma-separated (default 1,2,3)")
    ap.add_argument("--lab", default="uprobes", help="a lab in labs/ whose kernel probes work here (default uprobes; "
                    "this host has no kprobes)")
    ap.add_argument("--command", choices=["pool", "submissions"], default="pool",
                    help="pool: grade ROSTER --pool VMS (collect, then the pool); submissions: submissions DIR --vms VMS")
    ap.add_argument("--agent-runs", type=int, default=3,
                    help="jobs run directly on one simulated VM with the agent's phase functions timed (default 3; "
                    "0: skip)")
    ap.add_argument("--json", help="write the raw numbers (every student's phases) here")
    ap.add_argument("--markdown", help="also write the tables to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (results, evidence)")
    ap.add_argument("--from-results", metavar="DIR",
                    help="no run: print the per-VM figures of a results folder graded on real lab VMs (grade --pool or "
                    "submissions), from its journal and evidence")
    args = ap.parse_args()
    if args.from_results:
        if not (Path(args.from_results) / "journal.jsonl").is_file():
            sys.exit("bench/pool.py: %s has no journal.jsonl: name a results folder (the --results of grade or "
                     "submissions)" % args.from_results)
        print(results_figures(args.from_results))
        return
    try:
        sizes = sorted({int(k) for k in args.hosts.split(",")})
    except ValueError:
        sys.exit("bench/pool.py: --hosts takes pool sizes separated by commas, e.g. --hosts 1,2,3")
    if os.geteuid() != 0:
        sys.exit("bench/pool.py: run as root (sshd, mount namespaces, bpftrace)")
    if not sizes or sizes[0] < 1 or args.students < 1:
        sys.exit("bench/pool.py: --hosts and --students need numbers of 1 or more")
    lab_dir = REPO / "labs" / args.lab
    if not (lab_dir / "solutions").is_dir():
        sys.exit("bench/pool.py: no labs/%s/solutions/ (the reference answers are every student's answers)" % args.lab)
    ensure_tracefs()
    started = time.time()
    load_before = open("/proc/loadavg").read().split()[:3]
    work = Path(tempfile.mkdtemp(prefix="bpfhol-poolbench-"))
    (work / "farm").mkdir()
    farm = SshFarm(work / "farm")
    timers = Timers()
    timers.install()
    runs = {}
    try:
        log("building the lab workloads into an install prefix ...")
        install_lab_prefix(work / "prefix")
        common = work / "opt-bpfhol"          # every host's own prefix is mounted here, as /opt/bpfhol on a VM
        common.mkdir()
        agent = str(common / "sbin" / "bpfhol-agent")
        answers = work / "reference-answers"
        answers.mkdir()
        for p in sorted((lab_dir / "solutions").glob("*.bt")):
            (answers / p.name).write_text(p.read_text().replace("/opt/bpfhol/", str(common) + "/"))
        libc = libc_path()
        log("starting %d pool hosts and 1 student host (private mount namespaces) ..." % max(sizes))
        pool_hosts = [add_isolated_host(farm, work, work / "prefix", common, libc) for _ in range(max(sizes))]
        student_host = add_isolated_host(farm, work, work / "prefix", common, libc)
        # Warm-up, untimed: one student on every host pays for that host's first bpftrace run (BTF, caches).
        log("warm-up: one student on each of the %d hosts (untimed) ..." % len(pool_hosts))
        what = write_inputs(work / "warm", len(pool_hosts), pool_hosts, student_host, agent, answers, args.command)
        warm = run_grader(timers, work / "warm", what, args.lab, args.command)
        bad = [(s, r.get("error")) for s, r in warm["students"].items() if r.get("status") != "graded"]
        if bad or not warm["students"]:
            raise BenchError("the warm-up did not grade every student (%s); nothing was timed" % (bad[:2] or
                                                                                                 "no result"))
        for k in sorted(sizes, reverse=False):
            log("k=%d: %d students on %d pool host(s) ..." % (k, args.students, k))
            what = write_inputs(work / ("k%d" % k), args.students, pool_hosts[:k], student_host, agent, answers,
                                args.command)
            total0, idle0 = cpu_jiffies()
            run = run_grader(timers, work / ("k%d" % k), what, args.lab, args.command)
            total1, idle1 = cpu_jiffies()
            run["cpu_busy"] = 1 - (idle1 - idle0) / max(1, total1 - total0)
            run["load_after"] = open("/proc/loadavg").read().split()[:3]
            runs[k] = run
            if not per_student_phases(run):
                raise BenchError("k=%d graded nobody: %s" % (k, [r.get("error") for r in run["students"].values()][:2]))
            log("  exit %s, whole command %.1f s, pool %.1f s, collect %s s" % (
                run["exit"], run["wall"], run["phases"].get("pool", float("nan")),
                "%.1f" % run["phases"]["collect"] if "collect" in run["phases"] else "-"))
        costs = host_costs()
        inside, inside_n = {}, 0
        if args.agent_runs:
            log("the agent's own phases: %d job(s) run directly on pool host 1 (no SSH) ..." % args.agent_runs)
            inside, inside_n = agent_phases(pool_hosts[0], work, args.lab, answers, common, args.agent_runs)
    except (BenchError, RuntimeError, subprocess.SubprocessError) as exc:
        logs = sorted((work / "farm").glob("host-*/sshd.log"))
        tail = " / ".join(p.read_text(errors="replace").strip()[-200:] for p in logs if p.stat().st_size)
        sys.exit("bench/pool.py: %s%s" % (exc, " (sshd said: %s)" % tail if tail else ""))
    finally:
        farm.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if min(runs) != 1:
        log("note: the smallest pool timed is k=%d; T(1) is estimated as %d x T(%d)" % (min(runs), min(runs), min(runs)))
    text = ("%s, %s, `bench/pool.py --students %d --hosts %s --lab %s --command %s`\n\n" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), machine(), args.students, args.hosts, args.lab,
        args.command))
    text += summarize(runs, args)
    text += ("Fixed costs measured directly on this machine (median of 3): `bpftrace --version` %.2f s (the agent's "
             "facts, every job), python3 start-up %.2f s, python3 importing the agent %.2f s.\n" % (
                 costs["bpftrace_version"], costs["python3_start"], costs["python3_import_agent"]))
    if inside:
        text += render_agent_phases(inside, inside_n)
    text += "Load average before the run %s; after each k: %s.\n" % (
        " ".join(load_before), "; ".join("k=%d %s" % (k, " ".join(runs[k]["load_after"])) for k in sorted(runs)))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": {str(k): v for k, v in runs.items()},
                                               "per_student": {str(k): per_student_phases(v) for k, v in runs.items()},
                                               "costs": costs, "agent_phases": inside, "load_before": load_before}, indent=1, default=str))


class BenchError(Exception):
    """A run that cannot give figures (a host that does not grade): one line, not a traceback."""


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    bpftrace = subprocess.run(["bpftrace", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    return "%d CPUs (%s), kernel %s, %s" % (os.cpu_count(), model or platform.machine(), platform.release(), bpftrace)


if __name__ == "__main__":
    main()
