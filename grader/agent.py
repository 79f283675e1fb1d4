#!/usr/bin/env python3
"""bpfhol-agent: the grader's hands on a lab host.

Installed by the ``grader_access`` role as ``/opt/bpfhol/sbin/bpfhol-agent`` and run as
root through ONE sudo rule.  It is the only thing the grader may run as root, so it takes
no program paths from its caller: workloads come from ``<prefix>/bin`` next to its own
``sbin/``, bpftrace never gets ``--unsafe``, and every wait has a bound.

Why an agent instead of remote shell commands: the grader's SSH timeout can only close a
channel; it cannot signal a remote bpftrace (so maps would never print).  Done here, on the
host, SIGINT-then-SIGKILL is exact, output is capped at the source, and the result is one
JSON document that the grader parses defensively.

Standard library only: it must run on a bare Debian 12/13 python3.

    bpfhol-agent run JOB.json     grade one job, print the result JSON
    bpfhol-agent facts            host facts for preflight (arch, kernel, bpftrace, BTF, kprobes)
    bpfhol-agent version
"""

import json
import os
import platform
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

AGENT_VERSION = 1
TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
BPFTRACE = shutil.which("bpftrace") or "/usr/bin/bpftrace"
SAFE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SAFE_ARG = re.compile(r"^[A-Za-z0-9_.,:/=+-]{1,200}$")
# Files a job may ask the agent to create for its workload (randomized lab file).
RANDOM_FILE_ROOT = "/var/tmp/bpfhol-lab"
# Hard ceilings, whatever the job says.
MAX_WINDOW = 120
MAX_SCRIPTS = 8
MAX_SCRIPT_BYTES = 1 << 20
MAX_OUTPUT_BYTES = 8 << 20
# A script that keeps printing long past its cap is flooding: stop it early.
FLOOD_FACTOR = 16


FD_TRAMPOLINE = (
    "import os, sys\n"
    "for _ in range(int(sys.argv[1])): os.open('/dev/null', os.O_RDONLY)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class JobError(Exception):
    """The job itself is unusable; reported as the whole result's error."""


def prefix_dir():
    """The install prefix: parent of the directory holding this file (…/sbin/bpfhol-agent)."""
    here = os.path.dirname(os.path.realpath(__file__))
    return os.path.dirname(here)


def now():
    return time.time()


class CappedReader(threading.Thread):
    """Drain a pipe so the writer never blocks; keep the first ``cap`` bytes only."""

    def __init__(self, pipe, cap, on_line=None):
        super().__init__(daemon=True)
        self.pipe, self.cap, self.on_line = pipe, cap, on_line
        self.buf = bytearray()
        self.total = 0
        self._partial = b""

    def run(self):
        try:
            while True:
                chunk = self.pipe.read1(65536) if hasattr(self.pipe, "read1") else self.pipe.read(65536)
                if not chunk:
                    break
                self.total += len(chunk)
                room = self.cap - len(self.buf)
                if room > 0:
                    self.buf += chunk[:room]
                if self.on_line is not None:
                    data = self._partial + chunk
                    lines = data.split(b"\n")
                    self._partial = lines.pop()[-4096:]
                    for line in lines:
                        self.on_line(line)
        except (OSError, ValueError):
            pass

    @property
    def truncated(self):
        return self.total > len(self.buf)

    def text(self):
        return self.buf.decode("utf-8", "replace")


class ScriptRun:
    """One student script under bpftrace, from launch to its last byte."""

    def __init__(self, name, path, cap):
        self.name, self.path, self.cap = name, path, cap
        self.attached = threading.Event()
        self.attach_seconds = None
        self.proc = None
        self.started = None
        self.flooded = False
        self.attach_timed_out = False
        self.signals = []

    def _on_line(self, line):
        if not self.attached.is_set() and b'"attached_probes"' in line:
            self.attach_seconds = round(now() - self.started, 3)
            self.attached.set()

    def start(self):
        self.started = now()
        # Own session: signals reach bpftrace alone, never the agent.
        self.proc = subprocess.Popen(
            [BPFTRACE, "-f", "json", self.path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env=_clean_env(),
        )
        self.out = CappedReader(self.proc.stdout, self.cap, self._on_line)
        self.err = CappedReader(self.proc.stderr, min(self.cap, 65536))
        self.out.start()
        self.err.start()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def check_flood(self):
        if self.running() and self.out.total > self.cap * FLOOD_FACTOR:
            self.flooded = True
            self.signal(signal.SIGKILL)

    def signal(self, sig):
        if self.running():
            self.signals.append(signal.Signals(sig).name)
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def result(self):
        for reader in (self.out, self.err):
            reader.join(timeout=2)
        return {
            "name": self.name,
            "status": "ran",
            "exit_code": self.proc.returncode,
            "attached": self.attached.is_set(),
            "attach_seconds": self.attach_seconds,
            "stdout": self.out.text(),
            "stdout_bytes": self.out.total,
            "stdout_truncated": self.out.truncated,
            "stderr": self.err.text(),
            "stderr_truncated": self.err.truncated,
            "flooded": self.flooded,
            "attach_timed_out": self.attach_timed_out,
            "signals": self.signals,
        }


def _clean_env():
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    return env


def _read_script(src, dest, limit):
    """Copy a student's script into the agent's private dir; refuse links and specials."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "missing", "no such file: %s" % src
    except OSError as exc:
        return "unreadable", "cannot open %s: %s" % (src, exc.strerror)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "unreadable", "%s is not a regular file" % src
        if st.st_size > limit:
            return "too_large", "%s is %d bytes; the limit is %d" % (src, st.st_size, limit)
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        return "too_large", "%s is over %d bytes" % (src, limit)
    with open(dest, "wb") as out:
        out.write(data)
    return "ok", data.decode("utf-8", "replace")


def _script_source(job, spec, job_dir):
    """Where a script comes from: an upload beside the job, or a path ending in .bt."""
    if "upload" in spec:
        name = str(spec["upload"])
        if "/" in name or name.startswith("."):
            raise JobError("upload names are plain file names")
        return os.path.join(job_dir, name)
    path = str(spec.get("path", ""))
    if not path.startswith("/") or not path.endswith(".bt") or "/../" in path:
        raise JobError("script paths must be absolute and end in .bt")
    return path


def _stop_menu_services():
    """Stop the menu's copies of the workloads so only the graded run is traced."""
    if not shutil.which("systemctl") or not os.path.isdir("/run/systemd/system"):
        return []
    try:
        out = subprocess.run(
            ["systemctl", "list-units", "bpfhol-*.service", "--state=active", "--plain", "--no-legend"],
            capture_output=True, text=True, timeout=15,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    units = [line.split()[0] for line in out.splitlines() if line.strip()]
    units = [u for u in units if re.match(r"^bpfhol-[a-z0-9_-]+\.service$", u)]
    for unit in units:
        subprocess.run(["systemctl", "stop", unit], capture_output=True, timeout=30)
    return units


def _start_units(units):
    for unit in units:
        try:
            subprocess.run(["systemctl", "start", unit], capture_output=True, timeout=30)
        except (subprocess.SubprocessError, OSError):
            pass


def _make_random_file(path, content):
    real_root = os.path.realpath(RANDOM_FILE_ROOT)
    if os.path.realpath(path) != path or not path.startswith(RANDOM_FILE_ROOT + "/"):
        raise JobError("the workload's file must be a plain path under %s" % RANDOM_FILE_ROOT)
    os.makedirs(real_root, mode=0o755, exist_ok=True)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(content)


def _open_decoy(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        os.read(fd, 64)
        os.close(fd)
    except OSError:
        pass


def _workload_argv(job, truth_log):
    wl = job.get("workload") or {}
    name = str(wl.get("program", ""))
    if not SAFE_NAME.match(name):
        raise JobError("workload program must be a plain name like kprobeme")
    binary = os.path.join(prefix_dir(), "bin", name)
    if not os.access(binary, os.X_OK):
        raise JobError("workload %s is not installed at %s (re-run the lab playbook)" % (name, binary))
    argv = [binary]
    for key, value in sorted((wl.get("args") or {}).items()):
        key, value = str(key), str(value)
        if not SAFE_NAME.match(key) or not SAFE_ARG.match(value) or ".." in value:
            raise JobError("unsafe workload argument %r=%r" % (key, value))
        argv += ["--" + key, value]
    argv += ["--truth-log", truth_log]
    return argv


def run_job(job_path):
    t0 = now()
    job_dir = os.path.dirname(os.path.realpath(job_path))
    with open(job_path, "rb") as fh:
        raw = fh.read(1 << 20)
    try:
        job = json.loads(raw)
    except ValueError:
        raise JobError("job file is not JSON")
    if not isinstance(job, dict) or job.get("version") != AGENT_VERSION:
        raise JobError("job version mismatch: grader and agent differ (re-run the lab playbook)")

    window = min(float(job.get("window", 10)), MAX_WINDOW)
    attach_timeout = min(float(job.get("attach_timeout", 40)), 240)
    grace = min(float(job.get("grace", 4)), 30)
    out_cap = min(int(job.get("output_cap", 256 << 10)), MAX_OUTPUT_BYTES)
    script_cap = min(int(job.get("script_cap", 64 << 10)), MAX_SCRIPT_BYTES)
    scripts = job.get("scripts") or []
    if not isinstance(scripts, list) or len(scripts) > MAX_SCRIPTS:
        raise JobError("a job holds 1 to %d scripts" % MAX_SCRIPTS)

    work = tempfile.mkdtemp(prefix="bpfhol-agent-", dir="/run" if os.access("/run", os.W_OK) else None)
    os.chmod(work, 0o700)
    results, runs = [], []
    stopped = []
    workload_result = None
    random_dir = None
    try:
        for i, spec in enumerate(scripts):
            name = str(spec.get("name", "script%d" % i))[:64]
            src = _script_source(job, spec, job_dir)
            dest = os.path.join(work, "s%d.bt" % i)
            status, detail = _read_script(src, dest, script_cap)
            if status != "ok":
                results.append({"name": name, "status": status, "error": detail})
                continue
            run = ScriptRun(name, dest, out_cap)
            run.source = detail
            runs.append(run)
            results.append(run)

        wl = job.get("workload") or {}
        if wl.get("create_file"):
            path = str(wl["create_file"])
            random_dir = os.path.dirname(path)
            _make_random_file(path, "bpfhol lab data %s\n" % secrets.token_hex(8))
        decoy = None
        if wl.get("decoy_file") and random_dir:
            decoy = str(wl["decoy_file"])
            if os.path.dirname(decoy) != random_dir:
                raise JobError("the decoy file must sit beside the workload's file")
            _make_random_file(decoy, "not the lab file\n")
        truth_log = os.path.join(work, "truth.jsonl")
        argv = _workload_argv(job, truth_log) if wl else None

        stopped = _stop_menu_services() if job.get("stop_menu_workloads", True) else []
        for run in runs:
            run.start()
        deadline = now() + attach_timeout
        while now() < deadline and any(r.running() and not r.attached.is_set() for r in runs):
            time.sleep(0.05)
        attach_done = now()
        # The workload must not start while a script is still attaching (it would miss the first
        # events and be judged on half a run): a script not attached by the bound is stopped.
        for r in runs:
            if r.running() and not r.attached.is_set():
                r.attach_timed_out = True
                r.signal(signal.SIGKILL)

        wl_proc = None
        if argv:
            # The workload starts with a random number of spare descriptors open, so its fd
            # numbers cannot be guessed without tracing.  A python trampoline opens them at the
            # lowest numbers and execs the workload (its comm is the workload's from exec on).
            offset = max(0, min(int(wl.get("fd_offset", 0)), 64))
            launch = [sys.executable, "-c", FD_TRAMPOLINE, str(offset)] + argv if offset else argv
            wl_proc = subprocess.Popen(launch, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, start_new_session=True, env=_clean_env())
        end = now() + window
        next_decoy = now()
        while now() < end:
            for r in runs:
                r.check_flood()
            if decoy and now() >= next_decoy:
                # Another process (this agent) opens a decoy file all along: a script that does not
                # keep to the workload's events prints it, which is how "unfiltered" is told for sure.
                _open_decoy(decoy)
                next_decoy = now() + 0.25
            if wl_proc is None and not any(r.running() for r in runs):
                break
            time.sleep(0.1)
        if wl_proc is not None:
            # The workload got --duration-s ≈ window; give it a moment, then end it.
            try:
                wl_proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(wl_proc.pid, signal.SIGTERM)
                try:
                    wl_proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    os.killpg(wl_proc.pid, signal.SIGKILL)
                    wl_proc.wait(timeout=3)
            time.sleep(0.3)  # let the last close reach the probes
        for r in runs:
            r.signal(signal.SIGINT)
        stop_by = now() + grace
        while now() < stop_by and any(r.running() for r in runs):
            time.sleep(0.05)
        for r in runs:
            if r.running():
                r.signal(signal.SIGKILL)
        for r in runs:
            try:
                r.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if wl_proc is not None:
            truth_lines = []
            try:
                with open(truth_log, "r", errors="replace") as fh:
                    for n, line in enumerate(fh):
                        if n >= 10000:
                            break
                        truth_lines.append(line.rstrip("\n")[:4096])
            except FileNotFoundError:
                pass
            workload_result = {
                "decoy": decoy,
                "argv": argv[1:],
                "exit_code": wl_proc.returncode,
                "stderr": (wl_proc.stderr.read(4096) or b"").decode("utf-8", "replace"),
                "truth": truth_lines,
            }
    finally:
        for r in runs:
            if r.running():
                r.signal(signal.SIGKILL)
        _start_units(stopped)
        shutil.rmtree(work, ignore_errors=True)
        if random_dir and random_dir.startswith(RANDOM_FILE_ROOT + "/"):
            shutil.rmtree(random_dir, ignore_errors=True)

    out = []
    for r in results:
        if isinstance(r, ScriptRun):
            item = r.result()
            item["source"] = r.source
            out.append(item)
        else:
            out.append(r)
    return {
        "agent_version": AGENT_VERSION,
        "ok": True,
        "scripts": out,
        "workload": workload_result,
        "stopped_units": stopped,
        "timing": {"attach": round(attach_done - t0, 3), "total": round(now() - t0, 3)},
        "facts": basic_facts(),
    }


def bpftrace_version():
    try:
        out = subprocess.run([BPFTRACE, "--version"], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"v?(\d+\.\d+(?:\.\d+)?)", out)
    return m.group(1) if m else None


def basic_facts():
    return {
        "arch": platform.machine(),
        "kernel": platform.release(),
        "bpftrace": bpftrace_version(),
        "btf": os.path.exists("/sys/kernel/btf/vmlinux"),
        # Without tracefs bpftrace reports "tracepoint not found": a broken VM, not a student's error.
        "tracefs": any(os.path.isdir(d + "/events") for d in TRACEFS_DIRS),
    }


def kprobe_attaches(timeout=60):
    """Really attach a kprobe: the one proof that this host can run the kprobes lab."""
    if not os.path.exists(BPFTRACE):
        return False, "bpftrace is not installed"
    try:
        proc = subprocess.run(
            [BPFTRACE, "-e", "kprobe:vfs_read { exit(); }"],
            capture_output=True, text=True, timeout=timeout, env=_clean_env(),
        )
    except subprocess.TimeoutExpired:
        return False, "bpftrace did not finish within %ds" % timeout
    if proc.returncode == 0:
        return True, ""
    return False, (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1][:300]


def facts():
    result = basic_facts()
    ok, why = kprobe_attaches()
    result.update({
        "agent_version": AGENT_VERSION,
        "kprobe_attach": ok,
        "kprobe_error": why,
        "workloads": sorted(os.listdir(os.path.join(prefix_dir(), "bin")))
        if os.path.isdir(os.path.join(prefix_dir(), "bin")) else [],
        "ok": True,
    })
    return result


def _raise_memlock():
    """bpftrace wants locked memory for its maps on older kernels; root may raise the limit."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ImportError, ValueError, OSError):
        pass


def main(argv):
    if len(argv) >= 1 and argv[0] == "version":
        print(json.dumps({"agent_version": AGENT_VERSION}))
        return 0
    if os.geteuid() != 0:
        print(json.dumps({"ok": False, "error": "bpfhol-agent must run as root (through sudo)"}))
        return 2
    _raise_memlock()
    try:
        if len(argv) == 2 and argv[0] == "run":
            result = run_job(argv[1])
        elif len(argv) == 1 and argv[0] == "facts":
            result = facts()
        else:
            result = {"ok": False, "error": "usage: bpfhol-agent run JOB.json | facts | version"}
    except JobError as exc:
        result = {"ok": False, "agent_version": AGENT_VERSION, "error": str(exc)}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        result = {"ok": False, "agent_version": AGENT_VERSION, "error": "agent failed: %s" % exc}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
