"""Issue 21 #5 and #6 through the grader's CLI, as an instructor meets them: an ssh_config roster with Match
blocks (a traceback before), and key files that are a public key, 2 GiB, or missing (retried as "host
unreachable", or read whole, before).  Issue 34 #6 and #7: one VM named by two rows (the second student got the
first one's 10/10), and a private key others can read (OpenSSH refuses it; the grader used it).  Nothing here
connects anywhere: each is decided before grading."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def grader(*args):
    return subprocess.run([sys.executable, "-m", "grader", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_ssh_config_with_match_blocks_is_read_not_a_traceback(tmp_path):
    cfg = tmp_path / "vms.cfg"
    cfg.write_text("Host alice\n  HostName 127.0.0.1\n  Port 9\n  User bpfhol-grader\n"
                   "Match host bob exec \"touch %s\"\n  User root\nMatch all\n  ServerAliveInterval 5\n"
                   "Host bob\n  HostName 127.0.0.2\n  Port 9\n" % (tmp_path / "pwned"))   # own VM (one VM twice: refused)
    results = tmp_path / "res"
    proc = grader("grade", cfg, "--lab", "kprobes", "--results", results, "--retries", 1, "--connect-timeout", 2)
    assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr   # both VMs down: not gradable
    assert "2 Match block(s) ignored" in proc.stderr, proc.stderr
    rows = (results / "journal.jsonl").read_text().splitlines()
    assert len(rows) == 2 and all('"not_gradable"' in r and "unreachable" in r for r in rows), rows
    assert not (tmp_path / "pwned").exists()                 # Match exec is never run


def test_a_wrong_shared_key_file_stops_before_grading_with_one_line(tmp_path):
    pub, huge = tmp_path / "id.pub", tmp_path / "huge"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE bpfhol\n")
    with open(huge, "wb") as fh:                     # sparse 2 GiB: refused by its size, never read
        fh.truncate(2 << 30)
    for key, says in ((pub, "is a public key"), (huge, "not an SSH private key"), (tmp_path / "nope", "not found")):
        roster = tmp_path / "r.yml"
        roster.write_text("students:\n" + "".join("  - {student: s%d, host: 127.0.0.1, port: 9, key: %s}\n"
                                                  % (i, key) for i in range(3)))
        proc = grader("grade", roster, "--lab", "kprobes", "--results", tmp_path / ("res-" + key.name))
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "used by 3 rows" in lines[0], proc.stderr
        assert not (tmp_path / ("res-" + key.name) / "journal.jsonl").exists()     # nobody was tried


def test_one_vm_named_by_two_rows_stops_grade_and_submissions_with_one_line(tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    roster = tmp_path / "r.yml"
    roster.write_text("students:\n"
                      "  - {student: alice, host: 127.0.0.1, port: 9, key: %s}\n"
                      "  - {student: bob, host: 127.0.0.2, port: 9, key: %s}\n"
                      "  - {student: carol, host: 127.0.0.1, port: 9, key: %s}\n" % (key, key, key))
    proc = grader("grade", roster, "--lab", "kprobes", "--results", tmp_path / "res")
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "rows 1 (alice) and 3 (carol) both name 127.0.0.1:9" in line and "graded twice" in line, line
    assert not (tmp_path / "res" / "journal.jsonl").exists()           # refused before anyone was tried

    subs = tmp_path / "SUBMISSIONS"
    (subs / "dana").mkdir(parents=True)
    (subs / "dana" / "q1.bt").write_text("BEGIN { exit(); }\n")
    vms = tmp_path / "vms.yml"
    vms.write_text("students:\n  - {student: vm1, host: 127.0.0.1, port: 9, key: %s}\n"
                   "  - {student: vm2, host: 127.0.0.1, port: 9, key: %s}\n" % (key, key))
    proc = grader("submissions", subs, "--vms", vms, "--lab", "kprobes", "--results", tmp_path / "res2")
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "rows 1 (vm1) and 2 (vm2) both name 127.0.0.1:9" in line, line
    assert not (tmp_path / "res2" / "journal.jsonl").exists()


def test_a_private_key_others_can_read_is_refused_as_openssh_refuses_it(tmp_path):
    key = tmp_path / "grader key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    key.chmod(0o644)
    # OpenSSH's own verdict on this file (ssh-keygen -y loads it as ssh -i would)
    openssh = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True)
    assert openssh.returncode != 0 and "UNPROTECTED PRIVATE KEY FILE" in openssh.stderr, openssh.stderr
    roster = tmp_path / "r.yml"
    roster.write_text("students:\n" + "".join("  - {student: s%d, host: 127.0.0.%d, port: 9, key: '%s'}\n"
                                              % (i, i + 1, key) for i in range(3)))
    proc = grader("grade", roster, "--lab", "kprobes", "--results", tmp_path / "res")
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "accessible by group or others (mode 0644)" in line and "run chmod 600 '%s'" % key in line, line
    assert "used by 3 rows" in line and not (tmp_path / "res" / "journal.jsonl").exists()
    # one student's own key: that student is not gradable with the fix, the others are tried
    own = tmp_path / "own"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own)], check=True)
    own.chmod(0o640)
    roster.write_text("students:\n  - {student: ann, host: 127.0.0.1, port: 9, key: %s}\n"
                      "  - {student: ben, host: 127.0.0.2, port: 9, key: '%s'}\n" % (own, key))
    key.chmod(0o600)
    assert subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True).returncode == 0
    proc = grader("grade", roster, "--lab", "kprobes", "--results", tmp_path / "res", "--retries", 0,
                  "--connect-timeout", 2)
    assert proc.returncode == 1, proc.stderr
    by = {r["student"]: r for r in map(json.loads, (tmp_path / "res" / "journal.jsonl").read_text().splitlines())}
    assert by["ann"]["status"] == "not_gradable" and "run chmod 600 %s" % own in by["ann"]["error"], by["ann"]
    assert by["ben"]["status"] == "not_gradable" and "unreachable" in by["ben"]["error"], by["ben"]   # was tried
