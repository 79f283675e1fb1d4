"""Grade one student: build the agent job, run it through a backend, judge each exercise.

The verdict of an exercise is decided here in a fixed order, so feedback names the first
thing to fix: script missing -> did not compile/attach -> wrong probe kind -> flooded ->
the lab's check against ground truth.
"""

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field

from . import __version__, bpftrace_output
from .agent import AGENT_VERSION, worst_case_seconds
from .errors import HostError
from .truth import parse_truth

PROBE_HEADER = re.compile(r"(?m)^\s*([A-Za-z_]+)\s*:")
PROBE_ALIASES = {"k": "kprobe", "kr": "kretprobe", "t": "tracepoint", "rt": "rawtracepoint", "u": "uprobe",
                 "ur": "uretprobe", "U": "usdt", "f": "fentry", "fr": "fexit", "p": "profile", "i": "interval",
                 "s": "software", "h": "hardware", "kfunc": "fentry", "kretfunc": "fexit"}
FEEDBACK_CAP = 4000


@dataclass
class ExerciseResult:
    id: str
    title: str
    passed: bool
    score: float
    max_score: float
    reason: str
    feedback: str
    output_excerpt: str = ""
    visible: bool = True


@dataclass
class StudentResult:
    student: str
    status: str                     # graded | not_gradable
    score: float = 0.0
    max_score: float = 0.0
    exercises: list = field(default_factory=list)
    error: str = ""
    host: str = ""
    facts: dict = field(default_factory=dict)
    workload: dict = field(default_factory=dict)
    seconds: float = 0.0
    graded_at: float = 0.0
    evidence: str = ""              # students/<slug>/evidence-*.json: what the verdicts were decided on
    lab: str = ""                   # the lab judged (a results folder holds one lab; a re-judge checks it)
    rejudged: dict = field(default_factory=dict)   # a re-judge's new line keeps the verdict it replaced
    mode: str = ""                  # where it was graded: self-check (the student's own VM) | pool | submissions
    submitted: dict = field(default_factory=dict)  # pool mode: the collection (when, hashes, deadline, late scripts)
    question_evidence: dict = field(default_factory=dict)  # --question: exercise -> the evidence file it was judged on
    overrides: list = field(default_factory=list)  # the instructor's overrides applied (grader/overrides.py)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        exercises = [ExerciseResult(**e) for e in data.get("exercises", [])]
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "exercises"}
        return cls(exercises=exercises, **fields)


STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|/\*.*?\*/|//[^\n]*', re.S)


def strip_comments(source):
    """The script without its comments and string literals (a probe named inside a string is no probe)."""
    return STRING_OR_COMMENT.sub(lambda m: '""' if m.group(0).startswith('"') else " ", source)


def probe_kinds(source):
    """Probe kinds a script declares (kprobe:…, kr:…), comments and strings ignored; BEGIN/END are not
    probes here."""
    kinds = set()
    # The target after the colon: a function (kprobe:f), a category (tracepoint:syscalls:...), a path or a
    # library (uprobe:/opt/bpfhol/bin/uprobeme:f, uprobe:libc:f).
    for m in re.finditer(r"(?m)(^|[\s,}])([A-Za-z]+):[A-Za-z_*/.]", strip_comments(source)):
        word = m.group(2)
        kind = PROBE_ALIASES.get(word, word)
        kinds.add(kind)
    return kinds


# An attach point of a function probe: kind, then its target up to blank space, a block or a predicate.
ATTACH_POINT = re.compile(r"(?m)(?:^|[\s,}])([A-Za-z]+):([^\s,{]+)")
FUNCTION_PROBES = {"kprobe", "kretprobe", "uprobe", "uretprobe", "usdt", "fentry", "fexit"}


def probed_functions(source):
    """The function each function probe of a script names (uprobe:/bin/x:f -> f, kprobe:f -> f, globs kept),
    comments and strings ignored."""
    names = []
    for m in ATTACH_POINT.finditer(strip_comments(source)):
        if PROBE_ALIASES.get(m.group(1), m.group(1)) in FUNCTION_PROBES:
            target = m.group(2)
            for i, ch in enumerate(target):        # a predicate written right after the function: f/pid == 1/
                if ch == "/" and ":" not in target[i:] and i and target[i - 1] != ":":
                    target = target[:i]
                    break
            names.append(target.rsplit(":", 1)[-1])
    return names


def probes_one_of(source, functions):
    """Does the script attach a probe to one of ``functions`` (a glob such as process_* that matches one counts)?"""
    from fnmatch import fnmatchcase

    return any(fnmatchcase(f, pattern) for pattern in probed_functions(source) for f in functions)


def build_job(lab, scripts, rng=None):
    """scripts: {exercise id: ("upload", name) | ("path", absolute path)}."""
    workload = lab.workload_run(rng)
    job_scripts = []
    for ex in lab.exercises:
        how, where = scripts[ex.id]
        job_scripts.append({"name": ex.id, how: where})
    job = {
        "version": AGENT_VERSION, "lab": lab.name, "scripts": job_scripts, "workload": workload,
        "window": lab.window, "attach_timeout": lab.attach_timeout, "grace": lab.grace,
        "output_cap": lab.output_cap, "script_cap": lab.script_cap, "stop_menu_workloads": True,
    }
    if lab.lock_wait is not None:
        job["lock_wait"] = lab.lock_wait
    return job


TRANSPORT_SLACK = 30   # upload, mktemp, cleanup and the reply over a slow link


def job_timeout(job):
    """Outer bound of one agent run: the agent's own worst case for this job (its lock wait and every
    phase at its bound, grader/agent.py) plus the transport; a slow but healthy host is never cut off."""
    return worst_case_seconds(job) + TRANSPORT_SLACK


def _first_lines(text, n=6):
    """The first lines of bpftrace's stderr, from its first ERROR on: a warning printed before it (e.g. "Cannot
    raise RLIMIT_MEMLOCK") hid the real compile error in the one-line feedback an LMS shows.  The lines before
    the error follow it."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    first_error = next((i for i, line in enumerate(lines) if "ERROR" in line), 0)
    lines = lines[first_error:] + lines[:first_error]
    return "\n".join(lines[:n])[:FEEDBACK_CAP]


DIAGNOSTIC = re.compile(r"^(/[^:\s]+|<[^>]+>|[\w.+-]+\.(?:h|c|bt)):\d+(?::\d+)?")


def student_stderr(item):
    """bpftrace's messages about the student's own script only.  A message about another file (a header
    clang read) is withheld with the lines that follow it, which may quote that file."""
    own = item.get("path") or ""
    out, hiding = [], False
    for line in (item.get("stderr") or "").splitlines():
        m = DIAGNOSTIC.match(line)
        if m:
            hiding = not (own and m.group(1) == own) and m.group(1) not in ("stdin", "<stdin>")
            if hiding:
                if not out or out[-1] != "(a message about another file is not shown)":
                    out.append("(a message about another file is not shown)")
                continue
            line = "your script" + line[len(m.group(1)):]
        elif hiding and not line.startswith(("ERROR", "WARNING", "Attaching", "stdin")):
            continue
        else:
            hiding = False
        out.append(line)
    return "\n".join(out)


def _diagnose_failure(item, kinds_required):
    stderr = student_stderr(item)
    low = stderr.lower()
    if "unsafe" in low:
        return "unsafe", ("your script uses functions that need --unsafe (system(), etc.); the grader never "
                          "allows them. bpftrace said:\n" + _first_lines(stderr))
    if "kprobe_events" in low or ("kprobe" in low and "attach" in low) or "could not attach" in low:
        return "attach_failed", "bpftrace could not attach your probes on this host:\n" + _first_lines(stderr)
    if item.get("exit_code") not in (0, None, -2, 130) and not item.get("attached"):
        return "compile_error", "script did not compile: " + _first_lines(stderr)
    return None, ""


def _killed_while_ending(item):
    """SIGINT, then SIGKILL at the end of the grace: bpftrace never finished (not a flood, not a late attach)."""
    signals = item.get("signals") or []
    return "SIGINT" in signals and "SIGKILL" in signals[signals.index("SIGINT"):] and not item.get("flooded")


def judge_exercise(ex, lab, item, truth):
    base = dict(id=ex.id, title=ex.title, max_score=ex.points, visible=ex.visible, score=0.0, passed=False)
    if item is None or item.get("status") in ("missing",):
        return ExerciseResult(reason="missing", feedback="%s not found: save your answer as %s in %s"
                              % (ex.script, ex.script, lab.answers_dir), **base)
    if item.get("status") in ("too_large", "unreadable", "refused"):
        return ExerciseResult(reason=item["status"], feedback="%s could not be used: %s"
                              % (ex.script, item.get("error", "")), **base)
    source = item.get("source", "")
    if item.get("attach_timed_out"):
        return ExerciseResult(reason="attach_timeout", feedback="bpftrace had not attached your probes after %ds, so "
                              "the run went on without this script. Wildcards that match many functions attach "
                              "slowly; if your script is small, the lab VM was overloaded: ask for a regrade."
                              % lab.attach_timeout, **base)
    reason, text = _diagnose_failure(item, lab.require_probe_types)
    output = bpftrace_output.parse(item.get("stdout", ""))
    excerpt = output.excerpt(12)[:FEEDBACK_CAP]
    if reason:
        return ExerciseResult(reason=reason, feedback=text, output_excerpt=excerpt, **base)
    if not item.get("attached"):
        return ExerciseResult(reason="not_attached", feedback="bpftrace never attached your probes:\n"
                              + _first_lines(student_stderr(item)), output_excerpt=excerpt, **base)
    if lab.require_probe_types and not probe_kinds(source) & set(lab.require_probe_types):
        return ExerciseResult(reason="wrong_probe_type", feedback="this lab is about %s: your script must attach "
                              "at least one of them (e.g. %s:...)" % (" or ".join(lab.require_probe_types),
                                                                   lab.require_probe_types[0]),
                              output_excerpt=excerpt, **base)
    if ex.probe_on and not probes_one_of(source, ex.probe_on):
        # An answer read from the workload's I/O, or from anything but the function asked about, is no answer.
        return ExerciseResult(reason="not_probed", feedback="this question is about %s: your script must attach a "
                              "probe to %s" % (" / ".join("%s()" % f for f in ex.probe_on),
                                               "it" if len(ex.probe_on) == 1 else "one of them"),
                              output_excerpt=excerpt, **base)
    if item.get("flooded"):
        return ExerciseResult(reason="flooded", feedback="your script printed %d bytes and was stopped: filter "
                              "your probes (e.g. on comm)" % item.get("stdout_bytes", 0), output_excerpt=excerpt, **base)
    verdict = lab.checks[ex.check](output, truth, ex.params)
    if not verdict.passed and _killed_while_ending(item):
        # Not the script's fault as far as anyone can tell: bpftrace took the Ctrl-C but did not end (its END
        # output and maps are lost).  Seen once with bpftrace 0.17 on a loaded emulated VM.
        return ExerciseResult(reason="stop_timeout", feedback="bpftrace did not finish within the grace after "
                              "Ctrl-C, so what your script prints at the end was lost. This is the lab VM's or "
                              "bpftrace's doing, not necessarily your script's: ask for a regrade.",
                              output_excerpt=excerpt, **base)
    feedback = verdict.detail
    if not verdict.passed and verdict.reason in ex.hints:
        feedback += "\nHint: " + ex.hints[verdict.reason]
    if item.get("stdout_truncated"):
        feedback += "\n(note: output was cut at %d bytes)" % lab.output_cap
    if output.lost_events:
        feedback += "\n(note: bpftrace lost %d events)" % output.lost_events
    return ExerciseResult(passed=verdict.passed, score=ex.points if verdict.passed else 0.0, reason=verdict.reason,
                          feedback=feedback.strip()[:FEEDBACK_CAP], output_excerpt=excerpt,
                          **{k: v for k, v in base.items() if k not in ("passed", "score")})


FACT_KEYS = ("arch", "kernel", "bpftrace", "btf", "tracefs", "agent_version")


def _facts(facts):
    """The host facts a result keeps: known keys, short values (a forged reply cannot bloat the journal)."""
    facts = facts if isinstance(facts, dict) else {}
    return {k: (facts[k] if isinstance(facts[k], (bool, int, float)) or facts[k] is None else str(facts[k])[:100])
            for k in FACT_KEYS if k in facts}


def _answer_folders(job):
    """The folders on the host a cohort job reads the scripts from (its ``path`` specs); [] for uploads."""
    folders = []
    for spec in (job or {}).get("scripts") or []:
        if isinstance(spec, dict) and isinstance(spec.get("path"), str):
            folder = spec["path"].rsplit("/", 1)[0] or "/"
            if folder not in folders:
                folders.append(folder)
    return folders


def no_scripts_found(items, job, exercises):
    """The one-line reason a cohort student is not gradable when the agent found none of their scripts, or "".

    Every script "not found" in the answers folder the roster names is the roster's doing far more often than
    the student's (a forgotten `answers:` or `student_user:` on cloud VMs, an account named otherwise): graded,
    it was 0/10 with exit 0 for a whole cohort, and the zeros went to the LMS.  Not gradable instead, with the
    fix; a rerun after the fix grades them.  One script missing stays that question's FAIL.  Submissions
    (uploads) are what the student handed in, so handing in nothing stays a graded 0 with per-question feedback."""
    # the agent's own word for each: status "missing" is its FileNotFoundError on the path (grader/agent.py)
    if not exercises or any((items.get(ex.id) or {}).get("status") != "missing" for ex in exercises):
        return ""
    folders = _answer_folders(job)
    if not folders:
        return ""
    names = ", ".join(ex.script for ex in exercises)
    return ("no scripts found in %s (fix: the student saves %s there, or the roster names the folder that holds "
            "them with answers: or student_user:; then rerun)" % (" and ".join(folders), names))


def evaluate(lab, student, raw, visible_only=False, job=None):
    """Turn the agent's result document into a StudentResult (``job``: the job it answered, to name the answers
    folder when no script was found there)."""
    if not isinstance(raw, dict) or not raw.get("ok"):
        err = raw.get("error") if isinstance(raw, dict) else "unreadable agent reply"
        raise HostError("agent error: %s" % str(err)[:300], kind="agent")
    items = {}
    for item in raw.get("scripts") or []:
        if isinstance(item, dict):
            items[str(item.get("name"))] = item
    judged = [ex for ex in lab.exercises if ex.visible or not visible_only]
    nothing = no_scripts_found(items, job, judged)
    if nothing:
        raise HostError(nothing, kind="no_scripts")
    if (raw.get("facts") or {}).get("tracefs") is False:
        raise HostError("VM broken: tracefs is not mounted at /sys/kernel/tracing, so no probe can attach; "
                        "re-run the lab playbook (or mount -t tracefs nodev /sys/kernel/tracing)", kind="workload")
    workload = raw.get("workload") or {}
    truth = parse_truth(workload.get("truth") if isinstance(workload, dict) else None)
    if isinstance(workload, dict) and isinstance(workload.get("decoy"), str):
        truth.decoys = [workload["decoy"]]
    truth.comm = lab.workload_comm
    required = lab.truth_spec.get("required_event")
    if not truth.events or (required and not truth.of(required)):
        stderr = str(workload.get("stderr", ""))[:300] if isinstance(workload, dict) else ""
        raise HostError("the workload recorded no %s (lab VM broken?) %s"
                        % ("%s records" % required if required else "events", stderr), kind="workload")
    result = StudentResult(student=student, status="graded", facts=_facts(raw.get("facts")),
                           workload=lab.truth_summary(truth))
    for ex in judged:
        res = judge_exercise(ex, lab, items.get(ex.id), truth)
        result.exercises.append(res)
    result.score = sum(e.score for e in result.exercises)
    result.max_score = sum(e.max_score for e in result.exercises)
    return result


def grade(backend, lab, student, scripts, uploads=None, rng=None, visible_only=False):
    """Run one student's scripts on one host and judge them; HostError when the host fails us.

    The result carries ``evidence_doc``: the job, the agent's whole reply (each script as run, its raw
    output and errors, the truth log, host facts), written beside the result so any verdict can be
    audited and re-judged later without a VM (``report --rejudge``)."""
    started = time.time()
    job = build_job(lab, scripts, rng)
    raw = backend.run_agent_job(job, uploads or {}, timeout=job_timeout(job))
    result = evaluate(lab, student, raw, visible_only, job=job)
    result.host = backend.name
    result.seconds = round(time.time() - started, 2)
    result.graded_at = time.time()
    result.evidence_doc = evidence(job, raw, result, lab)
    return result


EVIDENCE_FORMAT = 1


def evidence(job, raw, result, lab=None):
    """Everything a verdict was decided on, for the instructor's audit and for re-judging (which checks the
    lab named here: a folder is never re-judged against another lab)."""
    hashes = {}
    for item in raw.get("scripts") or []:
        if isinstance(item, dict) and isinstance(item.get("source"), str):
            hashes[str(item.get("name"))] = hashlib.sha256(item["source"].encode("utf-8", "replace")).hexdigest()
    return {"format": EVIDENCE_FORMAT, "grader_version": __version__, "agent_version": raw.get("agent_version"),
            "student": result.student, "host": result.host, "graded_at": result.graded_at,
            "seconds": result.seconds, "script_sha256": hashes, "job": job, "reply": raw,
            "lab": lab.identity() if lab is not None else {"name": job.get("lab")}}


def rejudge(lab, doc):
    """A StudentResult from a saved evidence document, judged by today's checks (no VM involved)."""
    job = doc.get("job") if isinstance(doc.get("job"), dict) else None
    result = evaluate(lab, str(doc.get("student", "")), doc.get("reply"), job=job)
    result.host = str(doc.get("host", ""))
    result.seconds = float(doc.get("seconds") or 0)
    result.graded_at = float(doc.get("graded_at") or 0)
    return result


def not_gradable(student, why, host=""):
    return StudentResult(student=student, status="not_gradable", error=str(why)[:500], host=host,
                         graded_at=time.time())


def dumps(result):
    return json.dumps(result.to_dict(), sort_keys=True)
