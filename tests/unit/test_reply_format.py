"""The grader-agent reply, declared once (grader/agent.py: REPLY_FIELDS), checked on both sides."""

import io
import json
import os

import pytest

from grader import agent
from grader.backend import parse_reply
from grader.errors import HostError


def run_reply(**over):
    reply = {"ok": True, "reply_format": agent.REPLY_FORMAT, "agent_version": agent.AGENT_VERSION,
             "scripts": [{"name": "q1", "status": "ran", "stdout": "", "attached": True, "exit_code": 0,
                          "signals": ["SIGINT"]}],
             "workload": {"truth": []}, "timing": {}, "facts": {}}
    reply.update(over)
    return reply


def parsed(reply, kind=None):
    return parse_reply(json.dumps(reply).encode(), b"", 0, "vm1", kind=kind)


def test_a_reply_in_the_format_is_read():
    assert agent.reply_problems(run_reply()) == []
    assert parsed(run_reply(), kind="run")["scripts"][0]["name"] == "q1"


@pytest.mark.parametrize("change,problem", [
    ({"scripts": None}, "'scripts' is NoneType"),
    ({"ok": "yes"}, "'ok' is str"),
    ({"agent_version": "4"}, "'agent_version' is str"),
    ({"scripts": [{"name": "q1", "status": "exploded"}]}, "known status"),
    ({"scripts": [{"name": "q1", "status": "ran", "attached": "true"}]}, "attached is str"),
    ({"ok": False}, "'error' missing"),
    ({"reply_format": 2}, "reply format 2, this grader reads 1"),
])
def test_a_reply_outside_the_format_is_one_line(change, problem):
    with pytest.raises(HostError) as exc:
        parsed(run_reply(**change), kind="run")
    assert exc.value.kind == "agent" and problem in str(exc.value) and "re-run the lab playbook" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_run_reply_without_its_scripts_is_refused():
    reply = run_reply()
    del reply["scripts"]
    with pytest.raises(HostError, match="'scripts' missing"):
        parsed(reply, kind="run")


def test_agent_4_replies_without_the_format_field_are_held_to_types_only():
    legacy = run_reply()
    del legacy["reply_format"]
    assert parsed(legacy)["ok"] is True
    with pytest.raises(HostError, match="busy"):
        parsed({"ok": False, "agent_version": 4, "error": "busy: another grading job (agent pid 7) runs"})


def agent_prints(monkeypatch, capsys, argv):
    if os.geteuid() != 0:
        pytest.skip("the agent's main refuses to run as non-root; the test suite runs as root (scripts/test)")
    code = agent.main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_the_agent_prints_only_replies_in_its_format(monkeypatch, capsys):
    code, usage = agent_prints(monkeypatch, capsys, ["bogus"])
    assert code == 1 and usage["code"] == "usage" and agent.reply_problems(usage) == []

    def busy(path, **kw):
        raise agent.JobError("busy: another grading job (agent pid 9) is still running", code="busy")
    monkeypatch.setattr(agent, "run_job", busy)
    _, reply = agent_prints(monkeypatch, capsys, ["run", "/nonexistent/job.json"])
    assert reply["code"] == "busy" and agent.reply_problems(reply) == []
    with pytest.raises(HostError) as exc:            # the grader acts on the code, not on the wording
        parse_reply(json.dumps(dict(reply, error="another job runs")).encode(), b"", 1, "vm1")
    assert exc.value.kind == "busy"

    monkeypatch.setattr(agent, "run_job", lambda path, **kw: {"ok": True, "scripts": "not a list", "workload": None})
    code, reply = agent_prints(monkeypatch, capsys, ["run", "/nonexistent/job.json"])
    assert code == 1 and reply["ok"] is False and "outside its format" in reply["error"]
    assert "'scripts' is str" in reply["error"] and agent.reply_problems(reply) == []


def test_every_field_the_agent_writes_for_a_script_is_declared():
    """ScriptRun.result() and the staging phase write each script's item; a field added there without a
    declaration would go unchecked.  (The integration tests read real agent replies through parse_reply.)"""
    import inspect
    import re

    written = set(re.findall(r'"(\w+)":', inspect.getsource(agent.ScriptRun.result)))
    written |= set(re.findall(r'\{"name": name, "status": status, "(\w+)"', inspect.getsource(agent)))
    assert {"name", "status", "stdout", "attached", "signals"} <= written
    assert written <= set(agent.SCRIPT_FIELDS), written - set(agent.SCRIPT_FIELDS)
