"""Helpers of the fault and abuse suite: cohorts on real sshd hosts, the grader as a subprocess,
process-tree surgery on a host (kill sshd mid-run, "reboot"), and ONE validator that every case
runs on its results folder (journal parses, one line per student, reports present and well-formed,
student text inert)."""

import csv
import html.parser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FAULT_LAB = HERE / "lab"
SOLUTIONS = FAULT_LAB / "solutions"
PYTHON = sys.executable


def job_bound(lab_dir=FAULT_LAB):
    """The grader's outer bound for one job of the fault lab (derived from the agent's own bounds,
    grader.grading.job_timeout).  A run that waited this long for one student waited out a bound; the
    suite's wall-clock checks are "less than that", so they catch a hang, not a slow machine."""
    from grader.grading import build_job, job_timeout
    from grader.labspec import load_lab

    lab = load_lab(str(lab_dir))
    return job_timeout(build_job(lab, {ex.id: ("upload", ex.script) for ex in lab.exercises}))


def tight_lab(dest, attach=10, lock_wait=20):
    """A copy of the fault lab with shorter attach and lock-wait bounds, for a test that must wait out a
    whole job bound (about 3 min with the fault lab's own bounds, under 2 with these)."""
    import shutil

    import yaml

    dest = Path(dest)
    shutil.copytree(FAULT_LAB, dest)
    spec = yaml.safe_load((dest / "lab.yaml").read_text())
    spec.update(attach_timeout_seconds=attach, lock_wait_seconds=lock_wait)
    (dest / "lab.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def reference():
    return {p.name: p.read_text() for p in SOLUTIONS.glob("q*.bt")}


def answers(root, name, scripts):
    """An answers folder on 'the student's VM' (this machine); returns its path."""
    import hashlib

    folder = Path(root) / "answers" / ("a-" + hashlib.sha256(name.encode()).hexdigest()[:12])
    folder.mkdir(parents=True)
    for fname, text in scripts.items():
        (folder / fname).write_text(text)
    return str(folder)


def row(student, host, agent, answers_dir=None, **extra):
    r = {"student": student, "host": host.host, "port": host.port, "user": "root", "key": host.key, "agent": agent}
    if answers_dir:
        r["answers"] = answers_dir
    r.update(extra)
    return r


def write_roster(path, rows):
    """The roster file.  Rows that name one sshd and one answers folder (several students graded from the same
    reference scripts) get a copy of that folder each: the grader refuses two rows naming one host:port and one
    answers folder (one VM graded twice, grader/roster.py), which is what these stand-ins for many VMs are not."""
    import hashlib

    seen = set()
    rows = [dict(r) if isinstance(r, dict) else r for r in rows]
    for r in rows:
        if not isinstance(r, dict) or not r.get("answers") or not os.path.isdir(str(r["answers"])):
            continue
        place = (r.get("host"), r.get("port"), r["answers"])
        if place in seen:
            tag = hashlib.sha256(str(r.get("student")).encode("utf-8", "surrogatepass")).hexdigest()[:8]
            copy = "%s-%s" % (str(r["answers"]).rstrip("/"), tag)
            if not os.path.isdir(copy):
                shutil.copytree(r["answers"], copy, symlinks=True)
            r["answers"] = copy
        seen.add(place)
    Path(path).write_text(yaml.safe_dump({"students": rows}, allow_unicode=True))
    return str(path)


def grader_cmd(*args):
    return [PYTHON, "-m", "grader", *[str(a) for a in args]]


def run_grader(*args, timeout=300, netns=None):
    """Run the CLI; returns (CompletedProcess, wall seconds)."""
    cmd = grader_cmd(*args)
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


# -- process trees ---------------------------------------------------------------------------
def _children():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as fh:
                stat = fh.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(pid):
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def agent_running_under(pid):
    return any("bpfhol-agent run" in cmdline(p) for p in descendants(pid))


LEFTOVER = re.compile(r"(/run/bpfhol-agent-[A-Za-z0-9_]+|/run/bpfhol-lab/[0-9a-f]{16}|/tmp/bpfhol-[A-Za-z0-9]{10})/")


def kill_tree(pid):
    """SIGKILL a process and everything under it (a VM's power cut, as far as this host goes), then
    remove the work dirs those processes named on their command lines (a real VM's reboot clears
    /run and /tmp; here they would pile up on the machine)."""
    procs = [pid] + descendants(pid)
    leftovers = {m.group(1) for p in procs for m in LEFTOVER.finditer(cmdline(p))}
    for p in procs:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.2)
    for d in leftovers:
        shutil.rmtree(d, ignore_errors=True)


def wait_no_agents(prefix, timeout=30):
    """Wait until no bpfhol-agent of this prefix runs (an orphan would share the kernel with the next run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(str(prefix) in cmdline(int(d)) and "bpfhol-agent run" in cmdline(int(d))
                   for d in os.listdir("/proc") if d.isdigit()):
            return True
        time.sleep(0.2)
    return False


class MidRunFault(threading.Thread):
    """When a host starts running the agent, wait ``after`` seconds, cut the host (sshd and all it
    started), and, if ``restart_after`` is set, start sshd again that much later ("VM reboot").
    ``cut``: a function of the host to call instead (e.g. cut_sessions: the link dies, the agent runs on)."""

    def __init__(self, host, after=1.0, restart_after=None, timeout=240, cut=None):
        super().__init__(daemon=True)
        self.host, self.after, self.restart_after, self.timeout = host, after, restart_after, timeout
        self.cut = cut
        self.fired = threading.Event()
        self.stop_flag = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.timeout
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            if self.host.proc and agent_running_under(self.host.proc.pid):
                time.sleep(self.after)
                if self.cut:
                    self.cut(self.host)
                    self.fired.set()
                    return
                kill_tree(self.host.proc.pid)
                self.host.proc.wait(timeout=5)
                self.fired.set()
                if self.restart_after is not None:
                    time.sleep(self.restart_after)
                    self.host.start()
                return
            time.sleep(0.05)


# -- the validator ----------------------------------------------------------------------------
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "table", "thead", "tbody", "tr",
                "th", "td", "pre", "p", "section", "ul", "li", "a", "code", "b", "span", "div", "svg", "rect", "text",
                "label", "input", "script", "details", "summary"}
VOID = {"meta", "input"}


class _StrictHTML(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.errors, self.text, self.scripts = [], set(), [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.errors.append("event handler attribute %s" % name)
            if name in ("href", "src") and not re.fullmatch(
                    r"(\.\./\.\./)?(students/[A-Za-z0-9._-]+/)?index\.html|#filter=[\w:-]+", value or ""):
                self.errors.append("link out of the results folder: %s=%r" % (name, value))
        if tag == "script":
            self.scripts.append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("unbalanced </%s> (open: %s)" % (tag, self.stack[-3:]))
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "script":
            self.scripts[-1] += data
        else:
            self.text.append(data)


def check_html(text):
    parser = _StrictHTML()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors
    assert not parser.stack, "unclosed tags %s" % parser.stack
    assert parser.tags <= ALLOWED_TAGS, "unexpected tags %s" % (parser.tags - ALLOWED_TAGS)
    from grader.reports import html_report

    assert parser.scripts in ([], [html_report.SCRIPT]), "a script that is not the dashboard's own"
    return "".join(parser.text)


def validate_results(results_dir, students, lab_exercises=3, once=True, reports=True, torn=()):
    """Everything an instructor relies on after a run; returns {student: last journal record}.
    ``torn``: lines a test itself planted as a crash's leftovers (they must stay alone on their line)."""
    results_dir = Path(results_dir)
    lines = (results_dir / "journal.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line not in torn]   # every line parses: nothing half-written
    assert len(records) + len([x for x in lines if x in torn]) == len(lines)
    by = {}
    for r in records:
        assert {"student", "status", "score", "max_score", "exercises", "error"} <= set(r)
        assert r["status"] in ("graded", "not_gradable")
        if r["status"] == "not_gradable":
            assert r["error"].strip(), "a not-gradable result must say why: %r" % r
        else:
            assert len(r["exercises"]) == lab_exercises
        by[r["student"]] = r
    assert set(by) == set(students), (sorted(by), sorted(students))
    if once:
        assert len(records) == len(set(students)), "someone was recorded twice: %s" % [r["student"] for r in records]
    for s in by:
        from grader.journal import slug

        gs = json.loads((results_dir / "students" / slug(s) / "results.json").read_text())
        if by[s]["status"] == "graded":
            assert "score" in gs and "tests" in gs
        else:                           # Gradescope's failure form: never a score of 0
            assert "score" not in gs and gs["extra_data"]["bpfhol_status"] == by[s]["status"]
    if not reports:
        return by
    for name in ("summary.txt", "gradebook.csv", "junit.xml", "index.html"):
        data = (results_dir / name).read_bytes()
        assert data, name
        assert b"\x1b" not in data and b"\x07" not in data, "control characters in %s" % name
    with open(results_dir / "gradebook.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:4] == ["student", "status", "score", "max_score"]
    assert len(rows) == len(by) + 1 and all(len(r) == len(rows[0]) for r in rows)
    for r in rows[1:]:
        for cell in r:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "|", "%")), "live formula cell %r" % cell
    ET.parse(results_dir / "junit.xml")
    check_html((results_dir / "index.html").read_text())
    return by


def assert_one_line_error(proc, code, *words):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    # Progress lines ("[1/3] s0: 10/10") may precede it; the error itself is one line, no traceback.
    err = "\n".join(x for x in proc.stderr.strip().splitlines() if not re.match(r"^\[\d+/\d+\] ", x))
    assert err.count("\n") == 0 and err.startswith("bpfhol-grade: error:"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in err, err


def graded_normally(rec):
    """A reference student's result: full marks, with no allowance.  (Before the agent's start barrier,
    a starved machine could start the workload before a script's probes were live and q3 missed; the
    barrier makes every script see the whole loop, so a miss now is a bug, never noise.)"""
    return rec.get("status") == "graded" and rec["score"] == rec["max_score"]


# -- agent stand-ins (a student who is root on their VM can replace the agent) -----------------
POISON = "lone \ud800 surrogate, nonchars \ufffe\uffff, C1 \x85\x9b31m, C0 \x00\x0b\x0c\x1b[2J\x07 end"
RAW_BAD_UTF8 = b"\xff\xc0\x80\xed\xa0\x80"      # never valid UTF-8 (the last is a surrogate's encoding)

_FORGED_AGENT = r'''#!/usr/bin/python3
# Agent stand-in: runs the real agent, then poisons its reply before the grader reads it.
import json, subprocess, sys
REAL, MODE, POISON, RAW = %(real)r, %(mode)r, %(poison)r, %(raw)r
proc = subprocess.Popen([REAL] + sys.argv[1:], stdout=subprocess.PIPE)    # stdin: the job, straight to it
if sys.argv[1:2] != ["run"]:
    sys.stdout.buffer.write(proc.stdout.read())
    sys.exit(proc.wait())
sys.stdout.buffer.write(proc.stdout.readline())   # its ready line: the grader sends the job only then
sys.stdout.flush()
reply = json.loads(proc.stdout.read().decode().splitlines()[-1])
if MODE == "error":
    reply = {"ok": False, "error": POISON + " @RAW@"}
else:
    reply["facts"]["kernel"] = POISON
    for item in reply["scripts"]:
        if item.get("name") == "q1":          # the output: excerpts and check details carry it
            item["stdout"] = item.get("stdout", "") + POISON + " @RAW@\n"
        if item.get("name") == "q2":          # a "compile error": its lines go into the feedback
            item.update(exit_code=1, attached=False, stdout="",
                        stderr="stdin:1:1-9: ERROR: " + POISON + " @RAW@\nkprobe:\uffff {}\n")
text = json.dumps(reply).encode()             # ensure_ascii: the surrogate travels as the escape \ud800
sys.stdout.buffer.write(text.replace(b"@RAW@", RAW) + b"\n")
'''


def forged_agent(path, real_agent, mode):
    """An agent stand-in for the roster's ``agent`` column.  mode "output": q1's output and q2's
    compiler message and the host facts carry POISON and invalid UTF-8; mode "error": the whole
    reply is {"ok": false, "error": POISON ...}."""
    Path(path).write_text(_FORGED_AGENT % {"real": str(real_agent), "mode": mode, "poison": POISON,
                                           "raw": RAW_BAD_UTF8})
    os.chmod(path, 0o755)
    return str(path)


XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def assert_no_poison(results_dir, journal=True):
    """No report holds what XML/HTML/CSV cannot carry (C0/C1 controls, surrogates, U+FFFE/U+FFFF);
    with ``journal``, neither does any string of the journal (the reply was cleaned where it entered)."""
    results_dir = Path(results_dir)
    for name in ("summary.txt", "gradebook.csv", "junit.xml", "index.html"):
        text = (results_dir / name).read_bytes().decode("utf-8")      # strict: valid UTF-8
        bad = XML_FORBIDDEN.findall(text.replace("\r\n", "\n"))
        assert not bad, "%s holds %r" % (name, sorted(set(bad)))
    docs = [json.loads(f.read_bytes().decode("utf-8")) for f in results_dir.glob("students/*/results.json")]
    if journal:
        docs += [json.loads(line) for line in (results_dir / "journal.jsonl").read_bytes().decode("utf-8").splitlines()]
    for doc in docs:
        for s in _strings(doc):
            assert not XML_FORBIDDEN.search(s.replace("\r\n", "\n")), "poison kept: %r" % s[:200]


_LOGGING_AGENT = r'''#!/bin/sh
# Agent stand-in: logs when each job starts and ends.  With LINGER > 0 the first job waits that
# long before it runs the real agent (a VM so slow that the grader gives up on it).
LOG=%(log)s REAL=%(real)s LINGER=%(linger)d BUSY=%(busy)d
if [ "$1" = run ]; then
    n=$(cat "$LOG.count" 2>/dev/null || echo 0); echo $((n + 1)) > "$LOG.count"
    if [ "$n" -lt "$BUSY" ]; then
        echo '{"ok": false, "error": "busy: another grading job holds /run/lock/bpfhol-agent.lock"}'
        exit 1
    fi
    echo "start $$ $(date +%%s.%%N)" >> "$LOG"
    [ "$n" -eq 0 ] && [ "$LINGER" -gt 0 ] && sleep "$LINGER"
    "$REAL" "$@"; rc=$?
    echo "end $$ $(date +%%s.%%N)" >> "$LOG"
    exit $rc
fi
exec "$REAL" "$@"
'''


def logging_agent(path, real_agent, linger=0, busy=0):
    """An agent stand-in that logs each job's start and end to ``path``.log (see job_intervals);
    ``linger``: the first job sleeps that long first; ``busy``: the first n runs answer "busy"."""
    import shlex

    Path(path).write_text(_LOGGING_AGENT % {"log": shlex.quote(str(path) + ".log"), "real": shlex.quote(real_agent),
                                            "linger": linger, "busy": busy})
    os.chmod(path, 0o755)
    return str(path)


def job_intervals(agent_path):
    """[(start, end), ...] of the jobs a logging_agent ran (end None: never ended)."""
    starts, ends = {}, {}
    for line in Path(str(agent_path) + ".log").read_text().splitlines():
        what, pid, when = line.split()
        (starts if what == "start" else ends)[pid] = float(when)
    return sorted((t, ends.get(pid)) for pid, t in starts.items())


def assert_never_overlap(intervals):
    for (s1, e1), (s2, _) in zip(intervals, intervals[1:]):
        assert e1 is not None and s2 >= e1, "a job started %.1f s before the previous one ended" % ((e1 or 1e12) - s2)


def cut_sessions(host):
    """Kill only the sshd processes serving connections (the TCP link dies), not what they
    started: the agent runs on, as after a network cut or a grader that closed its channel."""
    for p in descendants(host.proc.pid):
        if cmdline(p).startswith("sshd"):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


_HOSTILE_REPLY_AGENT = '''#!/usr/bin/env python3
# A forged agent whose reply to a grading job is %(nbytes)d bytes of JSON meant to cost memory:
# mode "items" is one value per 3 bytes ({"ok": true, "pad": [{},{},...]}), valid JSON.
import os, sys
if len(sys.argv) < 2 or sys.argv[1] != "run":
    os.execv(%(real)r, [%(real)r] + sys.argv[1:])
head, tail = b'{"ok": true, "pad": [', b'{}]}'
n = max(0, (%(nbytes)d - len(head) - len(tail)) // 3)
out = sys.stdout.buffer
out.write(head)
chunk = b"{}," * 65536
for _ in range(n // 65536):
    out.write(chunk)
out.write(b"{}," * (n %% 65536) + tail + b"\\n")
'''


def hostile_reply_agent(path, real_agent, nbytes):
    """An agent stand-in (roster ``agent``) replying to a job with ``nbytes`` of cheap-to-send,
    costly-to-parse JSON; anything else (facts) goes to the real agent."""
    Path(path).write_text(_HOSTILE_REPLY_AGENT % {"real": str(real_agent), "nbytes": int(nbytes)})
    os.chmod(path, 0o755)
    return str(path)


def fault_lab_reply_cap():
    """The reply cap the grader derives for a fault-lab job (grader.backend.reply_cap)."""
    from grader.backend import reply_cap
    from grader.grading import build_job
    from grader.labspec import load_lab

    lab = load_lab(str(FAULT_LAB))
    return reply_cap(build_job(lab, {ex.id: ("upload", ex.script) for ex in lab.exercises}))
