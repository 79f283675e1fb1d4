"""Transport: the one place that talks to lab hosts.

Every backend offers ``run_agent_job(job, uploads, timeout)`` and ``agent_facts(timeout)``,
each returning the agent's parsed JSON reply or raising HostError; nothing here knows
what a correct answer is.
"""

import json

from ..errors import HostError
from ..safetext import safe_text, safe_tree

REPLY_CAP = 32 << 20


def parse_reply(stdout, stderr, exit_code, where):
    """The agent prints one JSON document; anything else is that host's failure, said plainly.

    This is where a host's words enter the grader: bytes that are not UTF-8, lone surrogate escapes,
    controls and U+FFFE/U+FFFF are made safe here (grader/safetext.py), so every later step (judging,
    the journal, the reports) sees only text every report format can carry."""
    text = safe_text(stdout).strip() if isinstance(stdout, (bytes, bytearray)) else (stdout or "").strip()
    stderr = safe_text(stderr or "")
    if not text:
        hint = stderr.strip().splitlines()[-1:] or ["no output"]
        if "password is required" in stderr or "a terminal is required" in stderr:
            raise HostError("sudo refused the agent on %s: re-run the lab playbook (grader_access role)" % where,
                            kind="agent")
        if exit_code == 127 or "No such file" in stderr or "command not found" in stderr:
            raise HostError("bpfhol-agent is not installed on %s: re-run the lab playbook" % where, kind="agent")
        raise HostError("agent on %s gave no reply (exit %s): %s" % (where, exit_code, hint[0][:200]), kind="agent")
    try:
        reply = safe_tree(json.loads(text.splitlines()[-1]))
    except (ValueError, RecursionError):
        raise HostError("agent on %s replied with something that is not JSON" % where, kind="agent")
    if not isinstance(reply, dict):
        raise HostError("agent on %s replied with JSON of the wrong shape" % where, kind="agent")
    if reply.get("ok") is False and str(reply.get("error", "")).startswith("busy"):
        # The agent's lock: another grading job still runs there.  A host condition, retried later.
        why = str(reply["error"])[len("busy"):].lstrip(": ")[:200] or "another grading job runs there"
        raise HostError("host busy: %s (%s)" % (why, where), kind="busy")
    return reply
