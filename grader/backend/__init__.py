"""Transport: the one place that talks to lab hosts.

Every backend offers ``run_agent_job(job, uploads, timeout)`` and ``agent_facts(timeout)``,
each returning the agent's parsed JSON reply or raising HostError; nothing here knows
what a correct answer is.
"""

import json

from ..errors import HostError

REPLY_CAP = 32 << 20


def parse_reply(stdout, stderr, exit_code, where):
    """The agent prints one JSON document; anything else is that host's failure, said plainly."""
    text = stdout.strip()
    if not text:
        hint = (stderr or "").strip().splitlines()[-1:] or ["no output"]
        if "password is required" in (stderr or "") or "a terminal is required" in (stderr or ""):
            raise HostError("sudo refused the agent on %s: re-run the lab playbook (grader_access role)" % where,
                            kind="agent")
        if exit_code == 127 or "No such file" in (stderr or "") or "command not found" in (stderr or ""):
            raise HostError("bpfhol-agent is not installed on %s: re-run the lab playbook" % where, kind="agent")
        raise HostError("agent on %s gave no reply (exit %s): %s" % (where, exit_code, hint[0][:200]), kind="agent")
    try:
        reply = json.loads(text.splitlines()[-1])
    except ValueError:
        raise HostError("agent on %s replied with something that is not JSON" % where, kind="agent")
    if not isinstance(reply, dict):
        raise HostError("agent on %s replied with JSON of the wrong shape" % where, kind="agent")
    return reply
