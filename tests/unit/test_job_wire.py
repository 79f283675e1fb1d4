"""The job's way to the agent since agent 6 (issue 34 item 2): the agent says it is ready once it holds the lock,
then reads the job, scripts included, from its stdin.  What each side accepts, without a host."""

import json
import os

import pytest

from grader import agent
from grader.backend import old_agent_problem


def piped(data):
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def test_a_job_and_its_files_travel_as_one_document():
    job = {"version": agent.AGENT_VERSION, "scripts": [{"name": "q1", "upload": "q1.bt"}], "window": 2}
    fd = piped(agent.job_input(job, {"q1.bt": b"BEGIN { printf(\"\\xff\"); }\n\xff"}))
    got = agent.receive_job(fd, bound=5)
    assert got["_files"] == {"q1.bt": b"BEGIN { printf(\"\\xff\"); }\n\xff"} and got["window"] == 2
    assert agent._sent_script(got["_files"], {"upload": "q1.bt"}, 100)[0] == "ok"
    assert agent._sent_script(got["_files"], {"upload": "q2.bt"}, 100) == ("missing", "no such file: q2.bt (not handed in)")
    assert agent._sent_script(got["_files"], {"upload": "q1.bt"}, 3)[0] == "too_large"


@pytest.mark.parametrize("data, why", [
    (b"", "no job was sent"),
    (b"{not json", "not JSON"),
    (json.dumps({"job": {"version": 5, "scripts": []}, "files": {}}).encode(), "version mismatch"),
    (json.dumps({"job": {"version": agent.AGENT_VERSION}, "files": {"../x.bt": "eA=="}}).encode(), "plain file"),
    (json.dumps({"job": {"version": agent.AGENT_VERSION}, "files": {"q1.bt": "not base64!"}}).encode(), "base64"),
    (json.dumps({"job": {"version": agent.AGENT_VERSION}, "files": []}).encode(), "no files object"),
])
def test_a_bad_job_on_stdin_is_one_line(data, why):
    with pytest.raises(agent.JobError, match=why):
        agent.receive_job(piped(data), bound=5)


def test_stdin_is_bounded_in_size_and_time(monkeypatch):
    monkeypatch.setattr(agent, "MAX_JOB_INPUT", 1000)
    with pytest.raises(agent.JobError, match="over 1000 bytes"):
        agent.receive_job(piped(b" " * 1001), bound=5)
    r, w = os.pipe()                                   # a grader that never sends (nor closes)
    try:
        with pytest.raises(agent.JobError, match="did not arrive within"):
            agent.receive_job(r, bound=0.3)
    finally:
        os.close(w)
        os.close(r)


def test_the_ready_line_and_what_is_not_one():
    assert agent.ready_version(agent.ready_line().strip().encode()) == agent.AGENT_VERSION
    assert agent.ready_version(b'{"ready": true, "agent_version": 7}') == 7
    assert agent.ready_version(b'{"ok": false, "code": "busy", "error": "busy: ..."}') is None
    assert agent.ready_version(b'{"ready": true, "ok": true}') is None     # a reply is never a ready line
    assert agent.ready_version(b"x" * 500) is None


def test_an_older_agent_is_told_apart_from_a_failed_job():
    old = {"ok": False, "code": "usage", "agent_version": 5, "error": "usage: bpfhol-agent run JOB.json | ..."}
    assert "version 5 and this grader needs %d" % agent.AGENT_VERSION in old_agent_problem(old, "vm1")
    assert old_agent_problem(dict(old, agent_version=agent.AGENT_VERSION), "vm1") == ""
    assert old_agent_problem({"ok": True, "agent_version": 5}, "vm1") == ""


def test_stdin_options_are_checked():
    assert agent._stdin_options(["--lock-wait", "30", "--tag", "bpfhol-job-" + "0" * 20]) == 30
    assert agent._stdin_options(["--lock-wait", "99999"]) == agent.MAX_LOCK_WAIT
    for bad in (["--lock-wait", "1e9"], ["--tag", "x; rm"], ["--lock-wait"], ["--other", "1"]):
        with pytest.raises(agent.JobError):
            agent._stdin_options(bad)
