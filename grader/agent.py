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

A job runs in phases, each a function below, in this order:

    hold_lock        one job per host at a time (a second one waits, bounded, then says "busy")
    clear_leftovers  what a killed job left (its folders, its processes) is removed, under the lock
    receive_job      only now does the job come: the agent says it is ready (one line on stdout) and reads the
                     job, scripts included, from its stdin (bounded in size and time), so no byte of a job
                     reaches the host while another job's scripts trace (``run JOB.json``, a job already on
                     the host, is for local use: the self-check's files are the student's own)
    stage_scripts    copy each student script into a root-only folder, refuse what may not run
    make_lab_files   the randomized lab file and its decoy, in a root-only folder
    start_workload   the workload starts HELD (its --hold): loader, truth log, spare fds done; it says
                     so with one byte of no content on a pipe (its --notify-fd)
    start_scripts    every script under bpftrace with __BPFTRACE_NOTIFY_PROBES_ATTACHED set
    attach_barrier   bpftrace prints that marker line only after every probe is attached (0.17 on
                     stderr, 0.23 on stdout), so the marker is the proof; late scripts are stopped
    release_workload SIGUSR1: the workload's loop starts now, seen whole by every script
    watch_window     the workload runs its loop until its second byte on the pipe; a decoy file is
                     opened from this process
    stop_scripts     SIGINT (END probes run, maps print), SIGKILL after the grace; the workload
                     is still alive (its --linger-s), so user stacks resolve as they print
    stop_workload    SIGTERM once every script is gone: only then does the workload write its
                     ground-truth log (it kept the records in memory), then SIGKILL
    read_truth       the workload's ground-truth log
    (main)           the reply is written, and read off the pipe by sshd, before the lock is let go

The truth is out of the scripts' reach: while any script runs, the workload neither formats nor writes
a record and the agent never reads the log, so a probe on write(), read() or vfs_* sees no answer.

Standard library only: it must run on a bare Debian 12/13 python3.

    bpfhol-agent run --stdin [--lock-wait S] [--tag T]
                                  the grader's way: take the lock, print the ready line, read the job
                                  (job_input) from stdin, grade it, print the result JSON
    bpfhol-agent run JOB.json     grade a job already on this host, print the result JSON
    bpfhol-agent collect F.bt...  the student's scripts as they are (content, sha256, mtime): grade --pool
    bpfhol-agent facts            host facts for preflight (arch, kernel, bpftrace, BTF, kprobes)
    bpfhol-agent version
"""

import errno
import fcntl
import hashlib
import io
import json
import os
import platform
import random
import re
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

# 5: the workloads write their truth at exit (--notify-fd), scripts are checked as clang reads them, cat() is
# refused; a grader of 5 refuses an agent of 4 (whose workloads log during the window): re-run the playbook.
# 6: the job travels on the agent's stdin once it holds the lock (``run --stdin``), never as files uploaded
# before; a grader of 6 refuses an agent of 5 (whose jobs could be read by the scripts of the job before).
AGENT_VERSION = 6
TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
BPFTRACE = shutil.which("bpftrace") or "/usr/bin/bpftrace"
SAFE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SAFE_ARG = re.compile(r"^[A-Za-z0-9_.,:/=+-]{1,200}$")
# The randomized lab files live under a root-only folder the agent creates and checks (never /tmp,
# /var/tmp or any other place where another user could plant a symlink or a folder first).
LAB_FILE_ROOT = "/run/bpfhol-lab"
# One grading job per host at a time (/run is root-only; not /run/lock, which is world-writable).  Hosts
# simulated on one machine share its kernel, so by default they share this lock too; the benchmark, which
# measures time and not verdicts, gives each simulated host a lock of its own with the marker file
# <prefix>/etc/lock-per-prefix (never installed by the roles).
LOCK_FILE = "/run/bpfhol-agent.lock"
# Hard ceilings, whatever the job says.
MAX_WINDOW = 120
MAX_SCRIPTS = 8
MAX_SCRIPT_BYTES = 1 << 20
MAX_OUTPUT_BYTES = 8 << 20
MAX_ATTACH = 240
MAX_GRACE = 30
MAX_LOCK_WAIT = 900
# A script that keeps printing long past its cap is flooding: stop it early.
FLOOD_FACTOR = 16
# Fixed bounds of the phases (seconds); worst_case_seconds() adds them up for the grader.
BOUND_WORKLOAD_READY = 30      # exec + loader + truth log of the held workload
BOUND_WORKLOAD_END = 10        # after the window, before the workload is terminated
WORKLOAD_LINGER = 900           # a workload's --linger-s when the lab gives none (it is ended long before)
BOUND_WORKLOAD_EXIT = 3        # each wait for an ending process: the workload (it writes its log) or a script
BOUND_SYSTEMCTL = 20           # each systemctl call of the menu's units (stop, then start again)
BOUND_VERSION = 15             # bpftrace --version for the facts
BOUND_SLACK = 20               # reading files, copying, python start-up on a slow (TCG) VM
BOUND_RECEIVE = 60             # from the ready line to the whole job on stdin (a few KiB; at most MAX_JOB_INPUT)
BOUND_REPLY_DRAIN = 10         # the reply's last bytes read off the pipe by sshd, the lock still held
MAX_JOB_FILE = 1 << 20
# The job and its uploads as JSON with base64 files: what the largest allowed job needs, and no more.
MAX_JOB_INPUT = MAX_JOB_FILE + MAX_SCRIPTS * (4 * (MAX_SCRIPT_BYTES // 3 + 1) + 256)
JOB_TAG_RE = re.compile(r"^bpfhol-job-[0-9a-f]{20}$")   # names a job in the process list (the grader's stale wait)
DECOY_EVERY = 0.25
# Polling periods: slow enough not to compete with bpftrace's attach on an emulated (TCG) VM, where a
# python loop at 20 Hz took a quarter of a vCPU.
POLL_SLOW = 0.2
POLL_WINDOW = 0.1
# Only kernel headers may be included: any other preprocessor line could make clang read a file of the
# host (bpftrace runs as root) and quote it in its errors, or pull it into the program.  Judged on the
# script as clang's first phases see it (line splices joined, comments gone), not on its spelling.
INCLUDE_ROOTS = ("linux", "net", "uapi", "asm", "asm-generic")
ALLOWED_INCLUDE_RE = re.compile(r"#[ \t\f\v]*include[ \t\f\v]*<((?:%s)/[A-Za-z0-9_][A-Za-z0-9_./-]*\.h)>[ \t\f\v]*"
                                % "|".join(re.escape(root) for root in INCLUDE_ROOTS))
# Preprocessor words that act outside a directive line (and the trigraph spellings of # and \).
PREPROCESSOR_WORDS_RE = re.compile(r"\b(?:_Pragma|__has_include|__has_include_next|__has_embed)\b|\?\?[=/]|%:")
# bpftrace's file builtin: cat("/etc/ssh/ssh_host_ed25519_key") needs no --unsafe (0.17 to 0.23) and prints
# any file root can read.  A script learns what it traces, never what a file holds.
FILE_BUILTIN_RE = re.compile(r"(?<![\w$@.>])cat\s*\(")
# Kernel memory is what a script can take from the host: bpftrace raises RLIMIT_MEMLOCK itself (0.17 and
# 0.23, main.cpp), and 6.x kernels charge BPF maps to the memory cgroup, so the limit that works is on the
# map sizes a script may ask for (bpftrace 0.20+ `config = { max_map_keys = N }`, or its env spelling).
MAX_MAP_KEYS = 65536
MAP_KEYS_RE = re.compile(r"\b(?:max_map_keys|BPFTRACE_MAX_MAP_KEYS|BPFTRACE_MAP_KEYS_MAX)\s*=\s*([^\s;,}]*)", re.I)
# Each distinct stack form (ustack, ustack(5), kstack(perf), ...) gets a stack map of its own, 131072 entries
# in 0.17 (about 128 MiB of kernel memory with 127-frame stacks): ten of them pinned 1.26 GiB here.
MAX_STACK_FORMS = 4
STACK_FORM_RE = re.compile(r"(?<![\w$@.>])([uk]stack)\b(\s*\([^()]*\))?")
# A job's scripts run at once, so their stack maps add up: four scripts of the worst four forms would pin about
# 2.16 GB (reliability row 30), a whole default lab VM.  bpftrace makes one map per distinct frame count (forms
# of one count share it), STACK_MAP_ENTRIES entries of 8 bytes a frame; a form without a count takes the kernel's
# 127.  The budget lets every script of a job hold its own ustack and kstack at full depth (4 x 133 MB).
STACK_MAP_ENTRIES = 131072
DEFAULT_STACK_FRAMES = 127
MAX_JOB_STACK_BYTES = 640 << 20


class JobError(Exception):
    """The job itself is unusable; reported as the whole result's error.  ``code`` is the machine-readable
    kind (REPLY_CODES); the grader acts on it, never on the wording."""

    def __init__(self, message, code="job"):
        super().__init__(message)
        self.code = code


# The agent's reply, declared once: one JSON object on one line.  The agent checks every reply against this
# before it prints it (main), and the grader checks every reply it reads (grader/backend: parse_reply), so a
# change on one side that the other does not know is one clear line, not a KeyError or a silent default.
# A field's type is a tuple of JSON types; None among them: the field may be null.  Required fields first.
REPLY_FORMAT = 1
REPLY_CODES = ("busy", "job", "agent", "usage", "not_root")
REPLY_FIELDS = {
    "ok": ((bool,), "always"),
    "reply_format": ((int,), "always"),
    "agent_version": ((int,), "always"),
    "error": ((str,), "failure"),
    "code": ((str,), "failure"),
    "scripts": ((list,), "run"),
    "workload": ((dict, type(None)), "run"),
    "stopped_units": ((list,), "optional"),
    "timing": ((dict,), "optional"),
    "facts": ((dict,), "optional"),
    "files": ((list,), "collect"),
}
COLLECTED_FIELDS = {                   # each item of "files" (a reply to collect)
    "path": (str,), "status": (str,), "source": (str,), "error": (str,), "sha256": (str,), "size": (int,),
    "mtime": (int, float, type(None)),
}
SCRIPT_FIELDS = {                      # each item of "scripts"
    "name": (str,), "status": (str,), "path": (str, type(None)), "source": (str,), "error": (str,),
    "exit_code": (int, type(None)), "attached": (bool,), "attach_seconds": (int, float, type(None)),
    "stdout": (str,), "stdout_bytes": (int,), "stdout_truncated": (bool,), "stderr": (str,),
    "stderr_truncated": (bool,), "flooded": (bool,), "attach_timed_out": (bool,), "signals": (list,),
}
SCRIPT_STATUSES = ("ran", "missing", "too_large", "unreadable", "refused")


def reply_problems(reply, kind="run"):
    """What is wrong with a reply to ``run`` (or ``facts``: kind="facts"); [] when it keeps the format.
    Unknown fields are allowed (a newer agent may add some); a known field of the wrong type is not."""
    if not isinstance(reply, dict):
        return ["the reply is not a JSON object"]
    problems = []
    ok = reply.get("ok")
    for name, (types, when) in REPLY_FIELDS.items():
        needed = when == "always" or (when == "failure" and ok is False) or (when in ("run", "collect") and ok is True
                                                                               and kind == when)
        if name not in reply:
            if needed:
                problems.append("field %r missing" % name)
            continue
        value = reply[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            problems.append("field %r is %s" % (name, type(value).__name__))
    if reply.get("reply_format") not in (None, REPLY_FORMAT) and isinstance(reply.get("reply_format"), int):
        problems.append("reply_format %s, this side reads %d" % (reply["reply_format"], REPLY_FORMAT))
    if ok is False and isinstance(reply.get("code"), str) and reply["code"] not in REPLY_CODES:
        problems.append("unknown code %r" % reply["code"][:20])
    for i, item in enumerate(reply.get("scripts") or [] if isinstance(reply.get("scripts"), list) else []):
        if not isinstance(item, dict):
            problems.append("scripts[%d] is not an object" % i)
            continue
        if not isinstance(item.get("name"), str) or item.get("status") not in SCRIPT_STATUSES:
            problems.append("scripts[%d] lacks a name or a known status" % i)
        for name, types in SCRIPT_FIELDS.items():
            if name in item and (not isinstance(item[name], types)
                                 or (isinstance(item[name], bool) and bool not in types)):
                problems.append("scripts[%d].%s is %s" % (i, name, type(item[name]).__name__))
    for i, item in enumerate(reply.get("files") or [] if isinstance(reply.get("files"), list) else []):
        if not isinstance(item, dict) or item.get("status") not in ("ok", "missing", "too_large", "unreadable"):
            problems.append("files[%d] is not an object with a known status" % i)
            continue
        for name, types in COLLECTED_FIELDS.items():
            if name in item and (not isinstance(item[name], types) or isinstance(item[name], bool)):
                problems.append("files[%d].%s is %s" % (i, name, type(item[name]).__name__))
    return problems[:5]


def prefix_dir():
    """The install prefix: parent of the directory holding this file (…/sbin/bpfhol-agent)."""
    here = os.path.dirname(os.path.realpath(__file__))
    return os.path.dirname(here)


def now():
    return time.monotonic()


def _clean_env():
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


# ---------------------------------------------------------------------------------------------
# bounds


def job_bounds(job):
    """Every bound of one job, from the job's numbers clamped to the agent's ceilings."""
    def num(key, default, hi):
        try:
            value = float(job.get(key, default))
        except (TypeError, ValueError):
            raise JobError("job field %s must be a number" % key)
        return max(0.0, min(value, hi))

    window = num("window", 10, MAX_WINDOW)
    bounds = {
        "window": window,
        "attach": num("attach_timeout", 40, MAX_ATTACH),
        "grace": num("grace", 4, MAX_GRACE),
        "workload_ready": BOUND_WORKLOAD_READY,
        "workload_end": BOUND_WORKLOAD_END,
        "systemctl": 2 * BOUND_SYSTEMCTL,
        "version": BOUND_VERSION,
        "slack": BOUND_SLACK,
        "receive": BOUND_RECEIVE,
        "reply_drain": BOUND_REPLY_DRAIN,
    }
    # A job waits for a running one at most as long as that one can take (its own bounds).
    bounds["lock_wait"] = num("lock_wait", run_seconds(bounds), MAX_LOCK_WAIT)
    return bounds


def run_seconds(bounds):
    """Worst case of one job once it holds the lock: every phase at its bound."""
    return (bounds["workload_ready"] + bounds["attach"] + bounds["window"] + bounds["workload_end"] + 6
            + bounds["grace"] + bounds["attach"] + 5 + BOUND_WORKLOAD_EXIT + bounds["systemctl"] + bounds["version"]
            + bounds["slack"] + bounds.get("receive", BOUND_RECEIVE) + bounds.get("reply_drain", BOUND_REPLY_DRAIN))


def worst_case_seconds(job):
    """How long ``bpfhol-agent run`` can take for this job, lock wait included.  The grader's
    outer timeout is derived from this, so a slow but healthy host is never cut off."""
    bounds = job_bounds(job)
    return bounds["lock_wait"] + run_seconds(bounds)


# ---------------------------------------------------------------------------------------------
# one script under bpftrace


# bpftrace's own readiness signal (its runtime tests use it): with this variable set, BPFtrace::run()
# prints the line right after its attach loop, on stderr in 0.17 and on stdout in 0.23.  In -f json
# mode a script cannot print a bare line of its own, so the marker cannot be forged from a script.
ATTACHED_ENV = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"
ATTACHED_LINE = (ATTACHED_ENV + "\n").encode()


class CappedReader(threading.Thread):
    """Drain a pipe so the writer never blocks; keep the first ``cap`` bytes only; note when the
    attach marker line goes by (and leave it out of the text)."""

    def __init__(self, pipe, cap):
        super().__init__(daemon=True)
        self.pipe, self.cap = pipe, cap
        self.buf = bytearray()
        self.total = 0
        self.marked = False
        self._tail = b"\n"

    def run(self):
        try:
            while True:
                chunk = self.pipe.read1(65536) if hasattr(self.pipe, "read1") else self.pipe.read(65536)
                if not chunk:
                    break
                self.total += len(chunk)
                if not self.marked:     # the line may come in pieces (0.17 writes it unbuffered)
                    window = self._tail + chunk
                    self.marked = b"\n" + ATTACHED_LINE in window
                    self._tail = window[-len(ATTACHED_LINE) - 1:]
                room = self.cap - len(self.buf)
                if room > 0:
                    self.buf += chunk[:room]
        except (OSError, ValueError):
            pass

    @property
    def truncated(self):
        return self.total > len(self.buf)

    def text(self):
        data = bytes(self.buf)
        if self.marked:
            data = (b"\n" + data).replace(b"\n" + ATTACHED_LINE, b"\n", 1)[1:]
        return data.decode("utf-8", "replace")


class ScriptRun:
    """One student script under bpftrace, from launch to its last byte."""

    def __init__(self, name, path, source, cap):
        self.name, self.path, self.source, self.cap = name, path, source, cap
        self.attach_seconds = None
        self.proc = None
        self.started = None
        self.flooded = False
        self.attach_timed_out = False
        self.signals = []

    def start(self):
        self.started = now()
        # No -c and no -p: either would make bpftrace 0.20+ attach the script's uprobes to that one
        # process only.  The attach proof is bpftrace's marker line (see attach_barrier).
        # Own session: signals reach bpftrace alone, never the agent.
        self.proc = subprocess.Popen(
            [BPFTRACE, "-f", "json", self.path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env=dict(_clean_env(), **{ATTACHED_ENV: "1"}),
        )
        self.out = CappedReader(self.proc.stdout, self.cap)
        self.err = CappedReader(self.proc.stderr, min(self.cap, 65536))
        self.out.start()
        self.err.start()

    @property
    def attached(self):
        return self.out.marked or self.err.marked

    def note_attached(self):
        if self.attach_seconds is None and self.attached:
            self.attach_seconds = round(now() - self.started, 3)

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
            "path": self.path,
            "source": self.source,
            "exit_code": self.proc.returncode,
            "attached": self.attach_seconds is not None,
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


# ---------------------------------------------------------------------------------------------
# phases


def check_job(job_path):
    """Read a job file already on this host (bounded) and check its shape; JobError says what is wrong."""
    with open(job_path, "rb") as fh:
        raw = fh.read(MAX_JOB_FILE)
    try:
        job = json.loads(raw)
    except ValueError:
        raise JobError("job file is not JSON")
    job = _checked_job(job)
    job["_dir"] = os.path.dirname(os.path.realpath(job_path))
    return job


def _checked_job(job):
    if not isinstance(job, dict) or job.get("version") != AGENT_VERSION:
        raise JobError("job version mismatch: grader and agent differ (re-run the lab playbook)")
    scripts = job.get("scripts") or []
    if not isinstance(scripts, list) or len(scripts) > MAX_SCRIPTS or not all(isinstance(s, dict) for s in scripts):
        raise JobError("a job holds 1 to %d scripts" % MAX_SCRIPTS)
    job["_bounds"] = job_bounds(job)
    return job


# -- the job on stdin (``run --stdin``) --------------------------------------------------------------------------
# A job's files are sent only once its agent holds the lock: uploaded before (SFTP, as up to agent 5), they passed
# through sshd's or sftp-server's write() while another job's scripts traced, and one student's script printed
# another's.  The agent takes the lock and clears what a killed job left, prints READY, and only then does the
# grader send job_input() and close its end; the agent reads it within BOUND_RECEIVE, at most MAX_JOB_INPUT bytes.


def ready_line():
    """The one line the agent prints on stdout when it holds the lock and waits for the job."""
    return json.dumps({"ready": True, "agent_version": AGENT_VERSION, "reply_format": REPLY_FORMAT}) + "\n"


def ready_version(line):
    """The agent version a ready line announces, or None when ``line`` (bytes) is not a ready line (then it is
    the agent's whole reply: busy, or an error before the lock)."""
    if len(line) > 200:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("ready") is not True or "ok" in doc:
        return None
    version = doc.get("agent_version")
    return version if isinstance(version, int) and not isinstance(version, bool) else -1


def job_input(job, uploads):
    """What the grader writes to the agent's stdin after the ready line: the job and its uploads, one JSON
    document (files as base64), ended by closing the stream."""
    import base64

    files = {str(name): base64.b64encode(bytes(data)).decode("ascii") for name, data in (uploads or {}).items()}
    return json.dumps({"files": files, "job": job}).encode() + b"\n"


def _read_stdin(fd, cap, bound):
    """Everything on ``fd`` until its end, at most ``cap`` bytes, within ``bound`` seconds."""
    deadline = now() + bound
    chunks, size = [], 0
    while True:
        left = deadline - now()
        if left <= 0:
            raise JobError("the job did not arrive within %ds of the agent's ready line" % bound)
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        data = os.read(fd, 1 << 16)
        if not data:
            return b"".join(chunks)
        size += len(data)
        if size > cap:
            raise JobError("the job sent on stdin is over %d bytes" % cap)
        chunks.append(data)


def receive_job(fd=0, bound=BOUND_RECEIVE):
    """The job from stdin, its uploads kept in memory (``_files``, name -> bytes), checked like a job file."""
    import base64
    import binascii

    raw = _read_stdin(fd, MAX_JOB_INPUT, bound)
    if not raw.strip():
        raise JobError("no job was sent after the ready line")
    try:
        doc = json.loads(raw)
    except ValueError:
        raise JobError("the job sent on stdin is not JSON")
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or len(files) > MAX_SCRIPTS:
        raise JobError("the job sent on stdin has no files object of at most %d files" % MAX_SCRIPTS)
    job = _checked_job(doc.get("job"))
    job["_files"] = {}
    for name, data in files.items():
        if not isinstance(data, str) or "/" in name or name.startswith(".") or not 0 < len(name) <= 64:
            raise JobError("upload names are plain file names")
        try:
            job["_files"][name] = base64.b64decode(data.encode("ascii"), validate=True)
        except (ValueError, binascii.Error):
            raise JobError("upload %s is not base64" % name[:64])
    return job


def lock_file():
    prefix = prefix_dir()
    if LOCK_FILE != "/run/bpfhol-agent.lock" or not os.path.exists(os.path.join(prefix, "etc", "lock-per-prefix")):
        return LOCK_FILE
    import hashlib

    return "/run/bpfhol-agent-%s.lock" % hashlib.sha256(prefix.encode()).hexdigest()[:12]


def _take_ticket(queue):
    """A waiting job's place in line: a file named by the time it came (and its pid), flock'ed by the job while it
    waits, so a ticket nobody holds is a dead waiter's.  Returns (name, open descriptor)."""
    try:
        os.mkdir(queue, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(queue)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise JobError("%s is not a private folder of the agent's; remove it and retry" % queue, code="agent")
    name = "%020d-%d" % (time.time_ns(), os.getpid())
    # made and locked under a hidden name, then renamed into line: a ticket in line is never an unlocked one
    hidden = os.path.join(queue, "." + name)
    fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(hidden, os.path.join(queue, name))
    return name, fd


def _first_in_line(queue, mine):
    """Is ``mine`` the oldest ticket of a live waiter?  Dead waiters' tickets are removed on the way."""
    try:
        names = sorted(os.listdir(queue))
    except OSError:
        return True                      # no line to keep (the queue folder was removed): the lock decides
    for name in names:
        if name == mine:
            return True
        if name.startswith("."):
            continue
        path = os.path.join(queue, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False                 # a live waiter came first
        else:
            try:
                os.unlink(path)          # its waiter died (or just left with the lock): no place in line now
            except OSError:
                pass
        finally:
            os.close(fd)
    return True


def hold_lock(wait):
    """One grading job per host: two at once would trace each other's workloads.  Returns the
    open lock file (held until it is closed or this process dies); JobError "busy" after ``wait``.
    First come, first served: waiting jobs queue by ticket (``<lock>.queue/``) and only the first in line
    tries the lock, so a later job never overtakes an earlier one (before, whoever polled first after the
    release won: a job waited 34 s while a later one waited 4)."""
    path = lock_file()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    deadline = now() + wait
    try:
        ticket, ticket_fd = _take_ticket(path + ".queue")
    except BaseException:
        os.close(fd)
        raise
    try:
        while True:
            if _first_in_line(path + ".queue", ticket):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        os.close(fd)
                        raise
            if now() >= deadline:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise JobError(code="busy", message="busy: another grading job (agent pid %s) is still running on this host after "
                               "%ds; retry when it ends" % (holder, wait))
            time.sleep(0.2)
    finally:
        try:
            os.unlink(os.path.join(path + ".queue", ticket))
        except OSError:
            pass
        os.close(ticket_fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


# A job's folders (its work folder /run/bpfhol-agent-*, its lab folder under LAB_FILE_ROOT) are flock'ed by
# the job while it lives: one that nobody holds was left by a job that was killed.
WORK_PREFIX = "bpfhol-agent-"
# What tempfile.mkdtemp makes of it (8 characters of [a-z0-9_]); never a lock or its queue (bpfhol-agent-*.lock*).
WORK_NAME_RE = re.compile(r"^bpfhol-agent-[a-z0-9_]{8}$")
# With a lock per prefix (the benchmark's simulated hosts) other jobs run beside this one: a folder they have
# just made and not yet locked must not look left over, so only older ones are.
STALE_AFTER = 120


def hold_folder(path):
    """Lock a folder of this job for as long as the job lives (the returned descriptor)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _held_by_a_live_job(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)                 # also lets go of the lock just taken


def _processes_using(paths):
    """Pids whose command line names a file in one of ``paths`` (a killed job's bpftrace and workload)."""
    needles = [os.fsencode(p.rstrip("/") + "/") for p in paths]
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                cmdline = fh.read(1 << 16)
        except OSError:
            continue
        if any(needle in cmdline for needle in needles):
            pids.append(int(entry))
    return pids


def clear_leftovers(job, work_parent):
    """Under the host's lock: remove what killed jobs left (their work and lab folders, which nobody holds)
    and end the processes still running from them, so a job never fails on a leftover (EEXIST on a lab
    folder of the same id) and never runs beside a dead job's bpftrace.  Returns how many folders went."""
    wl = (job or {}).get("workload") or {}
    own_lab = os.path.dirname(str(wl.get("create_file") or "")) or None
    per_prefix = lock_file() != LOCK_FILE
    candidates = []
    for parent, pattern in ((work_parent, WORK_NAME_RE), (LAB_FILE_ROOT, None)):
        try:
            st = os.lstat(parent)
            names = os.listdir(parent) if stat.S_ISDIR(st.st_mode) and st.st_uid == 0 else []
        except OSError:
            names = []
        candidates += [os.path.join(parent, name) for name in names if pattern is None or pattern.match(name)]
    stale = []
    for path in candidates:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or _held_by_a_live_job(path):
            continue
        if per_prefix and path != own_lab and time.time() - st.st_mtime < STALE_AFTER:
            continue
        stale.append(path)
    if not stale:
        return 0
    for pid in _processes_using(stale):
        try:
            os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def _script_source(spec, job_dir):
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


def _read_script(src, limit):
    """A student's script, read without following links or blocking on specials."""
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
    return "ok", data


def logical_source(source):
    """The script as clang's first phases see it: every line end a newline, line splices (a backslash, blanks,
    a newline) joined."""
    text = source.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\\[ \t\f\v]*\n", "", text)


def code_only(text):
    """``text`` without comments (each one blank, its newlines kept, so what follows a comment starts a line)
    and with every string literal emptied: what bpftrace and clang read as code."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(" " + "\n" * text.count("\n", i, end))
            i = end
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] not in '"\n':
                j += 2 if text[j] == "\\" else 1
            out.append('""')
            i = j + 1 if j < n and text[j] == '"' else j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def refused_preprocessor(source):
    """Why the script's preprocessor use may not run, or None.  Allowed: a first-line shebang and
    ``#include <linux/...>`` (or another kernel header root); nothing else that clang would take as a
    directive (``#import``, ``#include_next``, ``#/**/include``, ``#define``, a spliced ``#\\`` line,
    ``%:`` digraphs, ``_Pragma``)."""
    first, _, rest = source.lstrip("\ufeff").partition("\n")
    if first.startswith("#!"):
        if "\\" in first or "\r" in first:
            return "a shebang line with a backslash is refused"
        source = "\n" + rest
    logical = logical_source(source)
    code = code_only(logical)
    as_written = logical.split("\n")          # line for line with the code (comments keep their newlines)
    for n, line in enumerate(code.split("\n")):
        stripped = line.strip(" \t\f\v")
        if "#" not in stripped:
            continue
        m = ALLOWED_INCLUDE_RE.fullmatch(stripped)
        if not m or ".." in m.group(1).split("/") or "//" in m.group(1):
            shown = (as_written[n] if n < len(as_written) else stripped).strip()
            return ("%s is refused: only kernel headers may be included (#include <linux/...>), and no other "
                    "preprocessor line is allowed" % (shown[:120] or "#"))
    m = PREPROCESSOR_WORDS_RE.search(code)
    if m:
        return ("%s is refused: only kernel headers may be included (#include <linux/...>), and no other "
                "preprocessor word is allowed" % m.group(0))
    return None


def refused_builtin(code):
    """bpftrace's file builtin cat() (``code`` without comments and strings), or None."""
    if FILE_BUILTIN_RE.search(code):
        return ("cat() is refused: it would read files of the grading VM; answer from what your probes see "
                "(printf, maps)")
    return None


def refused_config(source):
    """A map size above what the lab needs (it would take host memory), or one that is not a plain number,
    or None.  The number is bounded before it is converted (a 5000-digit one must not crash the agent)."""
    code = code_only(logical_source(source))
    for m in MAP_KEYS_RE.finditer(code):
        value = m.group(1)
        if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) > MAX_MAP_KEYS:
            return "%s is refused: at most %d map keys, as a plain number" % (
                (m.group(0)[:60] + ("..." if len(m.group(0)) > 60 else "")), MAX_MAP_KEYS)
    return None


def refused_stacks(code):
    """More distinct stack forms than MAX_STACK_FORMS (each one a large kernel stack map), or None."""
    forms = {re.sub(r"\s+", "", m.group(1) + (m.group(2) or "")) for m in STACK_FORM_RE.finditer(code)}
    if len(forms) > MAX_STACK_FORMS:
        return ("%d different stack forms (%s) are refused: each takes a stack map of its own (about 128 MiB of "
                "kernel memory); use at most %d" % (len(forms), ", ".join(sorted(forms))[:120], MAX_STACK_FORMS))
    return None


def stack_map_bytes(code):
    """The kernel memory this script's stack maps take, as bpftrace 0.17 sizes them (an upper bound for later
    versions): one map per distinct frame count.  A count that is not a small plain number counts as the
    default (bpftrace refuses more than 127 frames itself)."""
    frames = set()
    for m in STACK_FORM_RE.finditer(code):
        count = re.search(r"\b([0-9]{1,4})\b", m.group(2) or "")
        frames.add(min(int(count.group(1)), DEFAULT_STACK_FRAMES) if count else DEFAULT_STACK_FRAMES)
    return sum(STACK_MAP_ENTRIES * 8 * n for n in frames)


def refused_job_stacks(code, taken):
    """Why this script's stack maps do not fit in what the job's earlier scripts left of MAX_JOB_STACK_BYTES
    (one line), or None.  Scripts are taken in the job's order, so the refusal falls on the script that
    overflows, and the others run."""
    need = stack_map_bytes(code)
    if taken + need > MAX_JOB_STACK_BYTES:
        return ("the stack maps of this script (%d MiB of kernel memory) do not fit beside the earlier scripts' "
                "(%d MiB) in the %d MiB one job may take: use fewer stack forms or fewer frames (ustack(5))"
                % (need >> 20, taken >> 20, MAX_JOB_STACK_BYTES >> 20))
    return None


def refused_include(source):
    """The first preprocessor line that may not run, or None (kept for callers of agent v4)."""
    return refused_preprocessor(source)


def script_refusal(source):
    """Why this script may not run (one line for the student), or None.  Any problem reading it refuses
    the script, never the job."""
    try:
        why = refused_preprocessor(source)
        if why:
            return why
        code = code_only(logical_source(source))
        return refused_builtin(code) or refused_config(source) or refused_stacks(code)
    except Exception as exc:         # a parse problem of one script is that script's, never the job's
        return "the script could not be checked (%s); it is refused" % type(exc).__name__


def _sent_script(files, spec, limit):
    """An upload that came with the job on stdin: (status, bytes or why), as _read_script says it."""
    name = str(spec["upload"])
    if "/" in name or name.startswith("."):
        raise JobError("upload names are plain file names")
    if name not in files:
        return "missing", "no such file: %s (not handed in)" % name
    if len(files[name]) > limit:
        return "too_large", "%s is %d bytes; the limit is %d" % (name, len(files[name]), limit)
    return "ok", files[name]


def stage_scripts(job, work):
    """Copy each script into the agent's root-only folder: ([result or ScriptRun], [ScriptRun])."""
    cap = int(min(int(job.get("output_cap", 256 << 10)), MAX_OUTPUT_BYTES))
    script_cap = int(min(int(job.get("script_cap", 64 << 10)), MAX_SCRIPT_BYTES))
    results, runs = [], []
    stack_taken = 0                  # bytes of stack maps the job's staged scripts take (MAX_JOB_STACK_BYTES)
    for i, spec in enumerate(job.get("scripts") or []):
        name = str(spec.get("name", "script%d" % i))[:64]
        if "_files" in job and "upload" in spec:
            status, data = _sent_script(job["_files"], spec, script_cap)
        else:
            status, data = _read_script(_script_source(spec, job.get("_dir")), script_cap)
        if status != "ok":
            results.append({"name": name, "status": status, "error": data})
            continue
        source = data.decode("utf-8", "replace")
        why = script_refusal(source)
        if not why:
            try:
                stack_bytes = stack_map_bytes(code_only(logical_source(source)))
                why = refused_job_stacks(code_only(logical_source(source)), stack_taken)
            except Exception as exc:     # a parse problem refuses this script, never the job
                why = "the script could not be checked (%s); it is refused" % type(exc).__name__
        if why:
            results.append({"name": name, "status": "refused", "source": source, "error": why})
            continue
        stack_taken += stack_bytes
        dest = os.path.join(work, "s%d.bt" % i)
        with open(dest, "wb") as out:
            out.write(data)
        run = ScriptRun(name, dest, source, cap)
        runs.append(run)
        results.append(run)
    return results, runs


def _safe_root(path):
    """A folder owned by root that nobody else can write, created if missing; JobError otherwise."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise JobError("%s is not a root-owned folder closed to others; remove it and retry" % path)


def make_lab_files(job):
    """The workload's randomized file and its decoy, in a fresh folder under LAB_FILE_ROOT.
    Returns (folder or None, decoy path or None)."""
    wl = job.get("workload") or {}
    if not wl.get("create_file"):
        return None, None
    path = str(wl["create_file"])
    folder = os.path.dirname(path)
    if (os.path.normpath(path) != path or os.path.dirname(folder) != LAB_FILE_ROOT
            or not SAFE_ARG.match(path) or ".." in path):
        raise JobError("the workload's file must be a plain path %s/<token>/<name>" % LAB_FILE_ROOT)
    decoy = str(wl.get("decoy_file") or "") or None
    if decoy and (os.path.dirname(decoy) != folder or os.path.normpath(decoy) != decoy or decoy == path):
        raise JobError("the decoy file must sit beside the workload's file")
    _safe_root(LAB_FILE_ROOT)
    os.mkdir(folder, 0o755)    # fresh: an existing folder is an error, never reused (a dead job's is cleared first)
    job.setdefault("_held", []).append(hold_folder(folder))
    for name, content in ((path, "bpfhol lab data %s\n" % secrets.token_hex(8)),
                          (decoy, "not the lab file\n")):
        if name:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w") as out:
                out.write(content)
    return folder, decoy


def _workload_argv(job, truth_log):
    wl = job.get("workload") or {}
    name = str(wl.get("program", ""))
    if not SAFE_NAME.match(name):
        raise JobError("workload program must be a plain name (the lab spec's workload.program)")
    binary = os.path.join(prefix_dir(), "bin", name)
    if not os.access(binary, os.X_OK):
        raise JobError("workload %s is not installed at %s (re-run the lab playbook)" % (name, binary))
    argv = [binary]
    for key, value in sorted((wl.get("args") or {}).items()):
        key, value = str(key), str(value)
        if not SAFE_NAME.match(key) or key == "notify-fd" or not SAFE_ARG.match(value) or ".." in value:
            raise JobError("unsafe workload argument %r=%r" % (key, value))
        argv += ["--" + key, value]
    # It writes its log as it exits: it must outlive the scripts, whatever the lab says, so it lingers after
    # its loop until stop_workload ends it.
    if "--linger-s" not in argv:
        argv += ["--linger-s", str(WORKLOAD_LINGER)]
    # The notices come on its stdout (a pipe to this process): no descriptor of its own, so the workload's
    # descriptor numbers stay what the job's offset says.
    return argv + ["--truth-log", truth_log, "--hold", "--notify-fd", "1"]


class Workload:
    """The graded workload: started held, released at the barrier, its loop ended by its own count;
    it may linger after that until it is stopped.  It keeps its records in memory and writes its truth
    log only when it exits (stop), after every script has stopped; it tells this process that start-up
    is over, and later that the loop is over, with one byte of no content each on its stdout, so nothing
    read or written while scripts trace carries an answer."""

    def __init__(self, argv, truth_log):
        self.argv, self.truth_log = argv, truth_log
        self.proc = None
        self.released_at = None
        self._notices = 0
        self._eof = False

    def _read_notices(self, timeout):
        """Count the notice bytes that arrived within ``timeout`` seconds (0: only those already there)."""
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        if ready:
            chunk = os.read(fd, 64)
            self._notices += len(chunk)
            self._eof = self._eof or not chunk
        return self._notices

    def start(self, bound):
        """Start it and wait until its start-up is over (its first notice byte)."""
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True, env=_clean_env())
        deadline = now() + bound
        while now() < deadline and not self._eof:
            if self._read_notices(min(0.2, deadline - now())) >= 1:
                return
        err = self._stderr() if not self.running() else ""
        self.stop(write_truth=False)
        raise JobError("the workload did not start (%s): %s" % (
            "exit %s" % self.proc.returncode if self.proc.returncode is not None else "no start notice in %ds"
            % bound, err[:200] or "no message"))

    def release(self):
        self.released_at = now()
        os.kill(self.proc.pid, signal.SIGUSR1)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def finished(self):
        """Its loop is over: its second notice byte came, or it closed the pipe (it exited)."""
        if self._notices >= 2 or self._eof:
            return True
        self._read_notices(0)
        return self._notices >= 2 or self._eof

    def stop(self, write_truth=True):
        """SIGTERM (it writes its truth log and its exit record), then SIGKILL; bounded.  Without
        ``write_truth`` straight to SIGKILL: its records are lost with it, never written while a script
        may still trace."""
        for sig in ((signal.SIGTERM, signal.SIGKILL) if write_truth else (signal.SIGKILL,)):
            if not self.running():
                return
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=BOUND_WORKLOAD_EXIT)
            except subprocess.TimeoutExpired:
                pass

    def _stderr(self):
        if self.running():
            return ""
        try:
            return (self.proc.stderr.read(4096) or b"").decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def truth_lines(self):
        """The log, read once the workload has exited (it is written at exit)."""
        if self.running():
            return []
        lines = []
        try:
            with open(self.truth_log, "r", errors="replace") as fh:
                for n, line in enumerate(fh):
                    if n >= 20000:
                        break
                    lines.append(line.rstrip("\n")[:4096])
        except FileNotFoundError:
            pass
        return lines


def start_workload(job, work):
    wl = job.get("workload")
    if not wl:
        return None
    truth_log = os.path.join(work, "truth.jsonl")
    workload = Workload(_workload_argv(job, truth_log), truth_log)
    workload.start(job["_bounds"]["workload_ready"])
    return workload


def start_scripts(runs):
    for run in runs:
        run.start()


def attach_barrier(runs, bound):
    """Wait until every script has attached all its probes (or ended); stop those late past ``bound``.

    bpftrace prints its "attached_probes" line BEFORE it loads and attaches the programs (0.17 in
    main(), 0.23 in BPFtrace::prerun()), so that line proves nothing.  With
    __BPFTRACE_NOTIFY_PROBES_ATTACHED in its environment it prints that marker right after the
    attach loop of BPFtrace::run() (both versions), when the probes are live.  (Before agent v3 the
    proof was a -c child, which bpftrace also starts after the loop; but with -c, bpftrace 0.20+
    attaches uprobes to the child alone, so a correct uprobe script saw nothing.)"""
    deadline = now() + bound
    while now() < deadline:
        for run in runs:
            run.note_attached()
        if all(run.attached or not run.running() for run in runs):
            break
        time.sleep(POLL_SLOW)
    for run in runs:
        run.note_attached()
        if run.running() and not run.attached:
            run.attach_timed_out = True
            run.signal(signal.SIGKILL)


def release_workload(workload):
    if workload is not None:
        workload.release()


def _open_decoy(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        os.read(fd, 64)
        os.close(fd)
    except OSError:
        pass


def watch_window(workload, runs, decoy, bounds):
    """The workload runs its count of opens (spread over the window); meanwhile this process opens
    the decoy, so a script that does not keep to the workload's events prints it."""
    end = now() + bounds["window"] + (bounds["workload_end"] if workload is not None else 0)
    next_decoy = now()
    while now() < end:
        for run in runs:
            run.check_flood()
        if decoy and now() >= next_decoy:
            _open_decoy(decoy)
            next_decoy = now() + DECOY_EVERY
        if workload is not None and workload.finished():
            break
        if workload is None and not any(run.running() for run in runs):
            break
        time.sleep(POLL_WINDOW)
    if workload is not None:
        time.sleep(0.3)  # the last events reach the probes' buffers


# bpftrace 0.17 can lose a Ctrl-C: its loop (BPFtrace::poll_perf_events, v0.17.0) leaves when epoll_wait
# itself returns EINTR, or when a later perf event (a printf) finds the flag its SIGINT handler set.  A SIGINT
# that lands between two epoll_waits of a script with no further events (maps only; on a loaded emulated VM
# the thread can sit runnable there for long) is never seen: bpftrace runs until it is killed and the
# student's maps are lost.  0.23 reads the flag on every pass.  So a SIGINT is sent again, but only while
# bpftrace is provably still in that loop: none of its probes detached yet (the first thing it does after
# the loop) and asleep in epoll_wait.  A second SIGINT after the loop would do harm: 0.17 resets the handler
# to the default (exit) before it prints the maps.
# Checked at jittered intervals of about this many seconds (a fixed period could stay in step with bpftrace's
# own 100 ms poll and always find it busy).
RESEND_SIGINT_AFTER = 0.5
EPOLL_WAIT_SYSCALLS = {"x86_64": {232, 281, 441}, "aarch64": {22, 441}}   # epoll_wait, epoll_pwait, epoll_pwait2
PROBE_FD_KINDS = ("anon_inode:[perf_event]", "anon_inode:bpf_link", "anon_inode:bpf-link")


def probe_fds(pid):
    """How many perf-event and BPF-link descriptors (one or more per attached probe) a process holds."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return None
    count = 0
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        count += target.startswith(PROBE_FD_KINDS)
    return count


def in_epoll_wait(pid):
    """Is the process's main thread asleep in epoll_wait (per /proc/PID/syscall)?"""
    try:
        with open("/proc/%d/syscall" % pid) as fh:
            first = fh.read().split()[0]
    except (OSError, IndexError):
        return False
    return first.isdigit() and int(first) in EPOLL_WAIT_SYSCALLS.get(os.uname().machine, ())


def sigint_was_lost(run, fds_before):
    return bool(run.running() and fds_before and probe_fds(run.proc.pid) == fds_before
                and in_epoll_wait(run.proc.pid))


def stop_scripts(runs, grace, attach_bound):
    """SIGINT each bpftrace (END probes run, maps print), SIGKILL after its grace.  Detaching takes about
    as long as attaching (a wildcard's hundred kprobes: over a minute on an emulated VM), so each script's
    grace is the lab's plus its own attach time: a slow-to-attach script is never killed before its maps
    print.  A Ctrl-C that bpftrace 0.17 lost is sent again (see RESEND_SIGINT_AFTER)."""
    fds_before = {run: probe_fds(run.proc.pid) if run.running() else None for run in runs}
    for run in runs:
        run.signal(signal.SIGINT)
    start = now()
    deadline = {run: start + grace + min(run.attach_seconds or 0, attach_bound) for run in runs}
    resend_at = {run: start + RESEND_SIGINT_AFTER for run in runs}
    jitter = random.Random()
    while any(run.running() and now() < deadline[run] for run in runs):
        time.sleep(0.05)
        for run in runs:
            if run.running() and now() >= deadline[run]:
                run.signal(signal.SIGKILL)
            elif now() >= resend_at[run]:
                resend_at[run] = now() + RESEND_SIGINT_AFTER * (0.5 + jitter.random())
                if sigint_was_lost(run, fds_before[run]):
                    run.signal(signal.SIGINT)
    for run in runs:
        if run.running():
            run.signal(signal.SIGKILL)
    for run in runs:
        try:
            run.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def stop_workload(workload, runs):
    """After the scripts: a lingering workload kept its memory map for their user stacks until now.  It
    writes its truth log as it ends, so it is ended only when no script can print any more: each bpftrace
    has exited or been sent SIGKILL (stop_scripts' last step).  A SIGKILLed process runs no more user code,
    so whatever its probes still see while the kernel tears them down (detaching hundreds of probes can
    take many seconds) reaches no output; waiting for it to be gone would only cost the run its truth."""
    if workload is None:
        return
    for run in runs:
        if run.running() and "SIGKILL" not in run.signals:
            run.signal(signal.SIGKILL)
    deadline = now() + BOUND_WORKLOAD_EXIT
    for run in runs:
        if run.running():
            try:
                run.proc.wait(timeout=max(0.0, deadline - now()))
            except subprocess.TimeoutExpired:
                pass
    workload.stop(write_truth=True)


def read_truth(workload, job, decoy):
    if workload is None:
        return None
    wl = job.get("workload") or {}
    return {
        "decoy": decoy,
        "argv": workload.argv[1:],
        "fd_offset": int((wl.get("args") or {}).get("spare-fds", 0) or 0),
        "exit_code": workload.proc.returncode,
        "stderr": workload._stderr(),
        "truth": workload.truth_lines(),
    }


# ---------------------------------------------------------------------------------------------
# the menu's own copies of the workloads


def _stop_menu_services():
    """Stop the menu's copies of the workloads so only the graded run is traced."""
    if not shutil.which("systemctl") or not os.path.isdir("/run/systemd/system"):
        return []
    try:
        out = subprocess.run(
            ["systemctl", "list-units", "bpfhol-*.service", "--state=active", "--plain", "--no-legend"],
            capture_output=True, text=True, timeout=BOUND_SYSTEMCTL / 2,
        ).stdout
        units = [line.split()[0] for line in out.splitlines() if line.strip()]
        units = [u for u in units if re.match(r"^bpfhol-[a-z0-9_-]+\.service$", u)]
        if units:
            subprocess.run(["systemctl", "stop"] + units, capture_output=True, timeout=BOUND_SYSTEMCTL / 2)
    except (subprocess.SubprocessError, OSError):
        return []
    return units


def _start_units(units):
    if units:
        try:
            subprocess.run(["systemctl", "start", "--no-block"] + units, capture_output=True,
                           timeout=BOUND_SYSTEMCTL)
        except (subprocess.SubprocessError, OSError):
            pass


# ---------------------------------------------------------------------------------------------


def collect_scripts(paths):
    """``bpfhol-agent collect PATH...``: a student's scripts as they are now, for grading elsewhere (the grader's
    `grade --pool`: graded on the instructor's VMs, not here, where the student is root).  Each file is read as a
    job reads it (no links, no specials, size-capped) and reported with its sha256, size and modification time.
    Nothing here decides a grade: a forged reply can only hand in other scripts, which is the student's to do."""
    if not 1 <= len(paths) <= MAX_SCRIPTS:
        raise JobError("collect takes 1 to %d script paths" % MAX_SCRIPTS, code="usage")
    files = []
    for path in paths:
        _script_source({"path": path}, None)            # absolute, ends in .bt, no /../ (JobError otherwise)
        status, data = _read_script(path, MAX_SCRIPT_BYTES)
        item = {"path": path, "status": status}
        if status != "ok":
            item["error"] = data
        else:
            try:
                mtime = os.lstat(path).st_mtime
            except OSError:
                mtime = None
            item.update(source=data.decode("utf-8", "replace"), sha256=hashlib.sha256(data).hexdigest(),
                        size=len(data), mtime=mtime)
        files.append(item)
    return {"ok": True, "agent_version": AGENT_VERSION, "reply_format": REPLY_FORMAT, "files": files,
            "collected_at": time.time()}


def run_job(job_path=None, lock_wait=None, held=None):
    """One job: from ``job_path`` (a file on this host), or with ``job_path`` None from stdin once the lock is
    held (``lock_wait``: how long to wait for it).  ``held``: a list that gets the lock, which the caller then
    lets go only after the reply is out; without it the lock is let go here."""
    t0 = now()
    job = check_job(job_path) if job_path is not None else None
    lock = hold_lock(job["_bounds"]["lock_wait"] if job else lock_wait)
    if held is not None:
        held.append(lock)
    waited = round(now() - t0, 3)
    work_parent = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
    timing = {"lock_wait": waited}
    try:
        cleared = clear_leftovers(job, work_parent)       # before the ready line: a killed job's bpftrace is gone
        if job is None:
            sys.stdout.write(ready_line())
            sys.stdout.flush()
            t_ready = now()
            job = receive_job()
            timing["received"] = round(now() - t_ready, 3)
            cleared += clear_leftovers(job, work_parent)  # with a lock per prefix: this job's own lab folder
        work = tempfile.mkdtemp(prefix=WORK_PREFIX, dir=work_parent)
    except BaseException:
        if held is None:
            os.close(lock)
        raise
    timing["leftovers_cleared"] = cleared
    bounds = job["_bounds"]
    os.chmod(work, 0o700)
    job.setdefault("_held", []).append(hold_folder(work))
    runs, stopped, workload, lab_dir, decoy = [], [], None, None, None
    try:
        results, runs = stage_scripts(job, work)
        lab_dir, decoy = make_lab_files(job)
        stopped = _stop_menu_services() if job.get("stop_menu_workloads", True) else []
        workload = start_workload(job, work)
        timing["workload_ready"] = round(now() - t0, 3)
        start_scripts(runs)
        attach_barrier(runs, bounds["attach"])
        timing["attach"] = round(now() - t0, 3)
        release_workload(workload)
        watch_window(workload, runs, decoy, bounds)
        stop_scripts(runs, bounds["grace"], bounds["attach"])
        stop_workload(workload, runs)
        truth = read_truth(workload, job, decoy)
    finally:
        for run in runs:
            if run.running():
                run.signal(signal.SIGKILL)
        if workload is not None:
            workload.stop(write_truth=False)     # a failed job's workload: nothing of it is returned
        _start_units(stopped)
        shutil.rmtree(work, ignore_errors=True)
        if lab_dir:
            shutil.rmtree(lab_dir, ignore_errors=True)
        for fd in job.pop("_held", []):
            os.close(fd)
        if held is None:
            os.close(lock)

    out = [r.result() if isinstance(r, ScriptRun) else r for r in results]
    timing["total"] = round(now() - t0, 3)
    return {
        "agent_version": AGENT_VERSION,
        "reply_format": REPLY_FORMAT,
        "ok": True,
        "scripts": out,
        "workload": truth,
        "stopped_units": stopped,
        "timing": timing,
        "facts": basic_facts(),
    }


def bpftrace_version():
    try:
        out = subprocess.run([BPFTRACE, "--version"], capture_output=True, text=True, timeout=BOUND_VERSION).stdout
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
        "agent_version": AGENT_VERSION,
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


def main(argv):
    if len(argv) >= 1 and argv[0] == "version":
        print(json.dumps({"agent_version": AGENT_VERSION}))
        return 0
    if os.geteuid() != 0:
        print(json.dumps({"ok": False, "reply_format": REPLY_FORMAT, "agent_version": AGENT_VERSION,
                          "code": "not_root", "error": "bpfhol-agent must run as root (through sudo)"}))
        return 2
    # No RLIMIT_MEMLOCK change here: bpftrace raises it itself (0.17 and 0.23, main.cpp), and on the
    # lab's 6.x kernels BPF memory is charged to the memory cgroup, not to that limit.
    held = []
    try:
        if argv[:2] == ["run", "--stdin"]:
            result = run_job(None, lock_wait=_stdin_options(argv[2:]), held=held)
        elif len(argv) == 2 and argv[0] == "run" and not argv[1].startswith("-"):
            result = run_job(argv[1], held=held)
        elif len(argv) == 1 and argv[0] == "facts":
            result = facts()
        elif argv[:1] == ["collect"]:
            result = collect_scripts(argv[1:])
        else:
            result = {"ok": False, "code": "usage",
                      "error": "usage: bpfhol-agent run --stdin [--lock-wait S] [--tag T] | run JOB.json | "
                               "collect SCRIPT.bt... | facts | version"}
    except JobError as exc:
        result = {"ok": False, "code": exc.code, "error": str(exc)}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        result = {"ok": False, "code": "agent", "error": "agent failed: %s" % exc}
    result.setdefault("agent_version", AGENT_VERSION)
    result.setdefault("reply_format", REPLY_FORMAT)
    problems = reply_problems(result, kind=argv[0] if argv[:1] in (["run"], ["collect"]) else "facts")
    if problems:                     # never print what the grader would refuse: say so in the format instead
        result = {"ok": False, "code": "agent", "agent_version": AGENT_VERSION, "reply_format": REPLY_FORMAT,
                  "error": "agent built a reply outside its format: %s" % "; ".join(problems)}
    try:
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        wait_drained(sys.stdout.fileno, BOUND_REPLY_DRAIN)
    finally:
        for fd in held:               # only now may the next job start: the reply is no longer in a pipe
            os.close(fd)
    return 0 if result.get("ok") else 1


def _stdin_options(args):
    """``--lock-wait S`` (whole seconds, clamped to MAX_LOCK_WAIT) and ``--tag T`` (only there to name the job
    in the process list); the default wait is a default job's worst case."""
    opts = dict(zip(args[::2], args[1::2]))
    if len(args) % 2 or set(opts) - {"--lock-wait", "--tag"}:
        raise JobError("usage: bpfhol-agent run --stdin [--lock-wait S] [--tag T]", code="usage")
    wait = opts.get("--lock-wait")
    if wait is not None and not re.fullmatch(r"[0-9]{1,6}", wait):
        raise JobError("--lock-wait takes whole seconds", code="usage")
    if "--tag" in opts and not JOB_TAG_RE.match(opts["--tag"]):
        raise JobError("--tag takes bpfhol-job-<20 hex digits>", code="usage")
    return min(int(wait), MAX_LOCK_WAIT) if wait is not None else job_bounds({})["lock_wait"]


def wait_drained(fd, bound):
    """Until the reader of ``fd`` (sshd) has taken everything written to it, at most ``bound`` seconds: the
    reply holds the student's scripts and output, and a pipe's bytes are read (into sshd) by a read() the next
    job's scripts could trace.  A pipe says what is unread (FIONREAD), a socket what is unsent (TIOCOUTQ)."""
    import struct
    import termios

    try:
        mode = os.fstat(fd()).st_mode if callable(fd) else os.fstat(fd).st_mode
        fd = fd() if callable(fd) else fd
    except (OSError, ValueError, io.UnsupportedOperation):
        return                         # not a descriptor (captured in a test): nothing waits on a reader
    request = termios.FIONREAD if stat.S_ISFIFO(mode) else termios.TIOCOUTQ if stat.S_ISSOCK(mode) else None
    deadline = now() + bound
    while request is not None and now() < deadline:
        try:
            left = struct.unpack("i", fcntl.ioctl(fd, request, b"\0\0\0\0"))[0]
        except OSError:
            return
        if left <= 0:
            return
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
