"""Transport: the one place that talks to lab hosts.

Every backend offers ``run_agent_job(job, uploads, timeout)`` and ``agent_facts(timeout)``,
each returning the agent's parsed JSON reply or raising HostError; nothing here knows
what a correct answer is.
"""

import json
import re
import threading

from ..agent import AGENT_VERSION, REPLY_FORMAT, reply_problems
from ..errors import HostError
from ..safetext import safe_text, safe_tree

REPLY_CAP = 32 << 20        # no reply is ever read past this, whatever a lab's caps say
FACTS_CAP = 1 << 20         # a facts reply is a few hundred bytes
MAX_JSON_ITEMS = 200_000    # values in one reply; a truthful one has a few thousand (truth log lines)
PARSE_AT_ONCE = 2           # replies decoded and parsed at once: bounds memory at --parallel 16

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_STRING_B = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_parse_gate = threading.BoundedSemaphore(PARSE_AT_ONCE)


def reply_cap(job):
    """The bytes a truthful agent's reply to ``job`` can need, so a forged one is cut there, not at
    32 MiB: per script its output and source as JSON may escape them (6 bytes per byte at worst,
    ``\\u0001``) and its error text, plus the truth log and room.  The default caps give ~8 MiB."""
    try:
        scripts = max(1, len(job.get("scripts") or ()))
        per_script = 6 * (int(job.get("output_cap", 256 << 10)) + int(job.get("script_cap", 64 << 10))) + (128 << 10)
    except (TypeError, ValueError):
        return REPLY_CAP
    return min(REPLY_CAP, scripts * per_script + (2 << 20))


def _last_line(data):
    """The reply is the agent's last line, as bytes: found and copied once, not the rest."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    blank = b" \t\r\n\x0b\x0c"
    end = len(data)
    while end and data[end - 1] in blank:
        end -= 1
    start = data.rfind(b"\n", 0, end) + 1
    while start < end and data[start] in blank:
        start += 1
    return bytes(memoryview(data)[start:end])


def json_items(text):
    """An upper bound on the values in a JSON text (strings skipped): what json.loads would allocate.
    31 MiB of ``[{},{},...]`` is 10 million objects (1.6 GB); a truthful reply has a few thousand."""
    if isinstance(text, str):
        skeleton = _STRING.sub("", text)
        return skeleton.count(",") + skeleton.count("[") + skeleton.count("{") + 1
    skeleton = _STRING_B.sub(b"", text)
    return skeleton.count(b",") + skeleton.count(b"[") + skeleton.count(b"{") + 1


def parse_reply(stdout, stderr, exit_code, where, kind=None):
    """The agent prints one JSON document; anything else is that host's failure, said plainly.

    This is where a host's words enter the grader: bytes that are not UTF-8, lone surrogate escapes,
    controls and U+FFFE/U+FFFF are made safe here (grader/safetext.py), so every later step (judging,
    the journal, the reports) sees only text every report format can carry."""
    with _parse_gate:
        return _parse_reply(stdout, stderr, exit_code, where, kind)


def _parse_reply(stdout, stderr, exit_code, where, kind=None):
    line = _last_line(stdout or b"")
    too_many = json_items(line) > MAX_JSON_ITEMS          # counted before decoding: no copy of a costly reply
    text = safe_text(line)
    del line
    stderr = safe_text(stderr or "")
    if not text:
        hint = stderr.strip().splitlines()[-1:] or ["no output"]
        if "password is required" in stderr or "a terminal is required" in stderr:
            raise HostError("sudo refused the agent on %s: re-run the lab playbook (grader_access role)" % where,
                            kind="agent")
        if exit_code == 127 or "No such file" in stderr or "command not found" in stderr:
            raise HostError("bpfhol-agent is not installed on %s: re-run the lab playbook" % where, kind="agent")
        raise HostError("agent on %s gave no reply (exit %s): %s" % (where, exit_code, hint[0][:200]), kind="agent")
    if too_many:
        raise HostError("agent on %s replied with more than %d JSON values (a truthful agent sends a few "
                        "thousand): not read" % (where, MAX_JSON_ITEMS), kind="agent")
    try:
        reply = safe_tree(json.loads(text))
    except (ValueError, RecursionError):
        raise HostError("agent on %s replied with something that is not JSON" % where, kind="agent")
    if not isinstance(reply, dict):
        raise HostError("agent on %s replied with JSON of the wrong shape" % where, kind="agent")
    problems = format_problems(reply, kind)
    if problems:
        raise HostError("agent on %s replied outside the reply format (%s): re-run the lab playbook so the VM's "
                        "agent matches this grader" % (where, "; ".join(problems)[:300]), kind="agent")
    if reply.get("ok") is False and (reply.get("code") == "busy"
                                     or ("code" not in reply and str(reply.get("error", "")).startswith("busy"))):
        # The agent's lock: another grading job still runs there.  A host condition, retried later.
        why = str(reply["error"])[len("busy"):].lstrip(": ")[:200] or "another grading job runs there"
        raise HostError("host busy: %s (%s)" % (why, where), kind="busy")
    return reply


def format_problems(reply, kind=None):
    """The agent's own declaration (grader/agent.py: REPLY_FIELDS) applied to what came back.  A reply of an
    agent from before the declared format (no reply_format: agent 4) is held to the field types only."""
    kind = kind or ("run" if "scripts" in reply or "workload" in reply else "facts")
    problems = reply_problems(reply, kind)
    if "reply_format" not in reply:
        problems = [p for p in problems if " is " in p]        # a field of the wrong type: never readable
    elif reply["reply_format"] != REPLY_FORMAT:
        problems = ["reply format %s, this grader reads %d" % (str(reply["reply_format"])[:10], REPLY_FORMAT)]
    return problems


def old_agent_problem(reply, where):
    """Why a failed reply to ``run --stdin`` comes from an agent older than this grader (it knows no --stdin and
    answers with usage or a missing file), or "": the fix is the playbook, said in one line."""
    version = reply.get("agent_version")
    if reply.get("ok") is False and isinstance(version, int) and not isinstance(version, bool) \
            and version < AGENT_VERSION:
        return ("the agent on %s is version %d and this grader needs %d (jobs go to the agent's stdin once it "
                "holds the lock): re-run the lab playbook" % (where, version, AGENT_VERSION))
    return ""
