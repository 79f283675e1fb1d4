"""No submission can retire a lab VM (issue 34, item 5): a submission that breaks the grading run (here an agent
stand-in that fails on any job holding the word CRASHME, as the agent once did on a 5000-digit map size) used to
retire the VM it ran on, and its retry the next: two such students emptied a 2-VM pool, and honest students got
"no lab VM was reachable".  Now a VM is retired only when a canary job (the lab's reference answers) fails on it
too; the submission that broke the run is "not gradable" with that reason, and every honest student is graded."""

import json
import sys

import pytest

from faultkit import FAULT_LAB, graded_normally, reference, run_grader, validate_results, write_roster

pytestmark = pytest.mark.faults


def crashing_agent(path, real_agent):
    from grader.agent import AGENT_VERSION as version

    path.write_text(f"""#!{sys.executable}
import base64, json, os, subprocess, sys
if sys.argv[1:2] == ["run"]:                 # the job comes on stdin after the real agent's ready line
    agent = subprocess.Popen([sys.executable, "{real_agent}"] + sys.argv[1:], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    sys.stdout.buffer.write(agent.stdout.readline())
    sys.stdout.flush()
    sent = sys.stdin.buffer.read()
    if any(b"CRASHME" in base64.b64decode(f) for f in json.loads(sent)["files"].values()):
        agent.kill()
        print(json.dumps({{"ok": False, "reply_format": 1, "agent_version": {version}, "code": "agent",
                          "error": "agent failed: this job broke me"}}))
        sys.exit(1)
    out, _ = agent.communicate(sent)
    sys.stdout.buffer.write(out)
    sys.exit(agent.returncode)
os.execv(sys.executable, [sys.executable, "{real_agent}"] + sys.argv[1:])
""")
    path.chmod(0o755)
    return str(path)


def test_two_breaking_submissions_do_not_empty_a_two_vm_pool(tmp_path, farm, lab_prefix):
    agent = crashing_agent(tmp_path / "agent", lab_prefix["agent"])
    vms = [farm.add(), farm.add()]
    pool = write_roster(tmp_path / "vms.yml", [
        {"student": "vm%d" % i, "host": vm.host, "port": vm.port, "user": "root", "key": vm.key, "agent": agent}
        for i, vm in enumerate(vms, 1)])
    subs = tmp_path / "SUBMISSIONS"
    breaking = dict(reference(), **{"q1.bt": "// CRASHME\n" + reference()["q1.bt"]})
    for student, scripts in (("mal1", breaking), ("mal2", breaking), ("honest1", reference()),
                             ("honest2", reference())):
        (subs / student).mkdir(parents=True)
        for name, text in scripts.items():
            (subs / student / name).write_text(text)
    proc, _ = run_grader("submissions", subs, "--vms", pool, "--lab", FAULT_LAB, "--results", tmp_path / "res",
                         timeout=900)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    by = validate_results(tmp_path / "res", ["mal1", "mal2", "honest1", "honest2"])
    for student in ("honest1", "honest2"):
        assert graded_normally(by[student]), by[student]
    for student in ("mal1", "mal2"):
        assert by[student]["status"] == "not_gradable", by[student]
        assert "stopped the grading run on a lab VM that grades the lab's reference answers" in by[student]["error"]
        assert "this job broke me" in by[student]["error"]
    # both VMs stayed in the pool: the honest students were graded on both of them
    hosts = {json.loads(l)["host"] for l in (tmp_path / "res" / "journal.jsonl").read_text().splitlines()
             if json.loads(l)["student"].startswith("honest")}
    assert hosts <= {"root@127.0.0.1:%d" % vm.port for vm in vms} and hosts, hosts
