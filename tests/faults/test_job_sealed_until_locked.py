"""One tenant at a time (issue 34, item 2): no file of a job reaches the VM before that job holds the agent's lock.

Two graders aim at one lab VM (two Gradescope runs on one VM).  The first student's q1 traces what the VM's
SSH side (sshd, sftp-server, sudo) and the agent write and read during its window; the second student's job
arrives while that window runs.  Before, the second job's files were uploaded by SFTP at once and only then
did its agent wait for the lock: the first student's output held the second one's script.  Now the agent takes
the lock first, says it is ready, and only then is the job (scripts included) sent on its stdin: nothing of the
second job passes through any process while the first one's scripts trace.
"""

import base64
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from faultkit import FAULT_LAB, graded_normally, grader_cmd, reference, validate_results

pytestmark = pytest.mark.faults

# What the VM's side of a job's transport writes and reads (the grader on this host is the instructor's
# machine, which no VM's script could trace, so its own processes are left out).  Each str() holds at most 63
# bytes, so four of them, 63 bytes apart, print the first 252 bytes of every buffer whole.
VM_SIDE = '(comm == "sshd" || comm == "sshd-session" || comm == "sftp-server" || comm == "sudo" || comm == "bpfhol-agent")'
TRACER = """tracepoint:syscalls:sys_enter_write /%(who)s/ {
  printf("W %%s|%%s|%%s|%%s|%%s\\n", comm, str(args->buf, 64), str(args->buf + 63, 64), str(args->buf + 126, 64),
         str(args->buf + 189, 64));
}
tracepoint:syscalls:sys_enter_read /%(who)s/ { @buf[tid] = args->buf; }
tracepoint:syscalls:sys_exit_read /@buf[tid]/ {
  if (args->ret > 0) {
    printf("R %%s|%%s|%%s|%%s|%%s\\n", comm, str(@buf[tid], 64), str(@buf[tid] + 63, 64), str(@buf[tid] + 126, 64),
           str(@buf[tid] + 189, 64));
  }
  delete(@buf[tid]);
}
""" % {"who": VM_SIDE}


def _long_window_lab(dest):
    """The fault lab with an 8 s window (the second job arrives well inside the first one's window) and a long lock
    wait (other test runs on this host's kernel take the same host-wide lock)."""
    import shutil

    shutil.copytree(FAULT_LAB, dest)
    spec = yaml.safe_load((dest / "lab.yaml").read_text())
    spec.update(window_seconds=8, lock_wait_seconds=150)
    (dest / "lab.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return dest


def _traces_started(agent, timeout=200):
    """Wait until a bpftrace started by ``agent`` (this test's install, not another test run's) runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
                parent = Path("/proc/%s/cmdline" % ppid).read_bytes()
            except (OSError, IndexError):
                continue
            if cmd[0].endswith(b"bpftrace") and agent.encode() in parent:
                return True
        time.sleep(0.05)
    return False


def _encodings(secret):
    """The secret as it could travel: plain, or inside base64 at any of the three alignments."""
    forms = [secret.encode()]
    for shift in range(3):
        enc = base64.b64encode(b"x" * shift + secret.encode())
        forms.append(enc[4 + (shift and 4):-4])        # the part that depends only on the secret
    return forms


def test_a_second_job_reaches_the_vm_only_when_it_holds_the_lock(tmp_path, farm, lab_prefix):
    vm = farm.add()
    lab = _long_window_lab(tmp_path / "lab")
    vms = tmp_path / "vms.yml"
    vms.write_text(yaml.safe_dump({"students": [{"student": "vm", "host": "127.0.0.1", "port": vm.port,
                                                 "user": "root", "key": vm.key, "agent": lab_prefix["agent"]}]}))
    secret = "SECRET-%s" % uuid.uuid4().hex
    scripts = {"eve": dict(reference(), **{"q1.bt": TRACER}),
               "bob": {name: "// %s\n%s" % (secret, text) for name, text in reference().items()}}
    procs, results = {}, {}
    t0 = time.monotonic()
    for student in ("eve", "bob"):
        subs = tmp_path / ("subs-" + student)
        (subs / student).mkdir(parents=True)
        for name, text in scripts[student].items():
            (subs / student / name).write_text(text)
        results[student] = tmp_path / ("res-" + student)
        procs[student] = subprocess.Popen(grader_cmd("submissions", subs, "--vms", vms, "--lab", lab, "--results",
                                                     results[student], "--quiet"),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if student == "eve":
            assert _traces_started(lab_prefix["agent"]), "the first job's scripts never started"
            time.sleep(1.5)                    # eve's probes are live: bob's job comes now, inside her window
    for student, proc in procs.items():
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, (student, err[-3000:])
    wall = time.monotonic() - t0
    recs = {s: validate_results(results[s], [s])[s] for s in procs}
    assert graded_normally(recs["bob"]), (recs["bob"]["status"], recs["bob"]["error"], recs["bob"]["exercises"])
    evidence = {s: json.loads((results[s] / "students" / s / recs[s]["evidence"]).read_text()) for s in procs}
    eve_q1 = {i["name"]: i for i in evidence["eve"]["reply"]["scripts"]}["q1"]
    seen = eve_q1.get("stdout", "")
    lines = [l for l in seen.splitlines() if "|" in l]
    leaked = [l for l in lines if any(f.decode() in l.replace("|", "") for f in _encodings(secret))]
    bob_lab = evidence["bob"]["job"]["workload"]["create_file"].split("/")[3]     # bob's random lab folder
    print("eve's tracer: %d lines (%d bytes), %d hold bob's secret, bob's lab folder seen: %s; bob waited %.1f s; "
          "wall %.1f s" % (len(lines), len(seen), len(leaked), bob_lab in seen,
                           evidence["bob"]["reply"]["timing"]["lock_wait"], wall))
    assert eve_q1["status"] == "ran" and eve_q1.get("attached"), eve_q1
    assert lines, "the tracer saw nothing of the VM's side: it proves nothing"
    assert not leaked, leaked[:3]
    assert bob_lab not in seen
    assert evidence["bob"]["reply"]["timing"]["lock_wait"] > 2.0      # bob's job really waited for eve's
    assert wall < 120 + sum(e["reply"]["timing"]["lock_wait"] for e in evidence.values()), wall
