"""Reruns through the real CLI, real sshd hosts and bpftrace: the reports cover the whole journal whatever
`--student` says, a plain rerun retries "not gradable" students and keeps graded ones, and every command pins
host keys in the same default known_hosts file."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "tests" / "fixtures" / "labs" / "tracepoints" / "solutions"


def grader(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "grader", *[str(a) for a in args]], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


def answers(tmp_path, name):
    folder = tmp_path / "answers" / name
    folder.mkdir(parents=True)
    for p in SOLUTIONS.glob("q*.bt"):
        (folder / p.name).write_text(p.read_text())
    return str(folder)


def row(name, host, agent, answers_dir, port=None, **identity):
    return dict({"student": name, "host": "127.0.0.1", "port": port or host.port, "user": "root", "key": host.key,
                 "agent": agent, "answers": answers_dir}, **identity)


def journal(results):
    return [json.loads(line) for line in (results / "journal.jsonl").read_text().splitlines()]


def test_reports_cover_the_cohort_and_reruns_retry_the_not_gradable(tmp_path, farm, lab_prefix, test_lab):
    host = farm.add()
    agent = lab_prefix["agent"]
    roster = tmp_path / "roster.yml"
    students = [row("alice", host, agent, answers(tmp_path, "alice"), email="alice@example.edu", login="alice01"),
                row("bob", host, agent, answers(tmp_path, "bob"), email="bob@example.edu"),
                row("carol", host, agent, answers(tmp_path, "carol"), port=9, email="carol@example.edu")]
    roster.write_text(yaml.safe_dump({"students": students}))
    results = tmp_path / "results"
    common = ["--lab", test_lab, "--results", results, "--parallel", 1, "--connect-timeout", 3]

    first = grader("grade", roster, *common)
    assert first.returncode == 1, first.stderr                       # carol's VM is down
    assert [(r["student"], r["status"]) for r in journal(results)] == [
        ("alice", "graded"), ("bob", "graded"), ("carol", "not_gradable")]

    # Regrading one student rewrites every report with the whole cohort in it.
    only_bob = grader("grade", roster, *common, "--student", "bob", "--force")
    assert only_bob.returncode == 0, only_bob.stderr                  # bob was graded; carol is not this run's
    assert [r["student"] for r in journal(results)] == ["alice", "bob", "carol", "bob"]
    book = list(csv.DictReader((results / "gradebook.csv").open()))
    assert [(r["student"], r["status"]) for r in book] == [
        ("alice", "graded"), ("bob", "graded"), ("carol", "not_gradable")]
    canvas = list(csv.reader((results / "canvas.csv").open()))
    # Canvas: a row only for a graded student Canvas can match (alice's SIS Login ID; bob has only an email, which
    # Canvas does not match by); carol could not be graded: no row, as a blank cell would remove her Canvas score
    assert [r[0] for r in canvas[2:]] == ["alice"] and canvas[2][3] == "alice01"
    left_out = (results / "lms-left-out.txt").read_text()
    assert "bob: no Canvas ID, SIS User ID or SIS Login ID" in left_out and "neither file" in left_out
    moodle = list(csv.reader((results / "moodle.csv").open()))
    # Moodle gets no row for carol: an empty cell would clear a grade an instructor entered by hand.
    assert [r[2] for r in moodle[1:]] == ["alice@example.edu", "bob@example.edu"]
    assert "carol" in (results / "summary.txt").read_text() and "carol" in only_bob.stdout

    # Carol's VM is back: a plain rerun grades her and leaves alice and bob alone.
    students[2]["port"] = host.port
    roster.write_text(yaml.safe_dump({"students": students}))
    rerun = grader("grade", roster, *common)
    assert rerun.returncode == 0, rerun.stderr
    lines = journal(results)
    assert [r["student"] for r in lines] == ["alice", "bob", "carol", "bob", "carol"]
    assert lines[-1]["status"] == "graded" and lines[-1]["score"] > 0, lines[-1]
    book = list(csv.DictReader((results / "gradebook.csv").open()))
    assert [(r["student"], r["status"]) for r in book] == [("alice", "graded"), ("bob", "graded"), ("carol", "graded")]
    # And a plain rerun of a finished cohort grades nobody.
    again = grader("grade", roster, *common)
    assert again.returncode == 0 and len(journal(results)) == 5


def test_one_known_hosts_default_for_every_command(tmp_path, farm, lab_prefix, test_lab):
    host = farm.add()
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": [row("kim", host, lab_prefix["agent"], answers(tmp_path, "kim"))]}))
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    env.pop("BPFHOL_KNOWN_HOSTS", None)
    default = tmp_path / "home" / ".cache" / "bpfhol" / "known_hosts"

    first = grader("grade", roster, "--lab", test_lab, "--results", tmp_path / "r1", "--quiet", env=env)
    assert first.returncode == 0, first.stderr
    assert "[127.0.0.1]:%d" % host.port in default.read_text()          # pinned in the one default file
    assert not (tmp_path / "r1" / "known_hosts").exists()

    host.stop()
    host.regenerate_host_key()                                          # the VM was rebuilt (or spoofed)
    host.start()
    # A new results folder does not trust the new key, nor does preflight or self-check.
    refused = grader("grade", roster, "--lab", test_lab, "--results", tmp_path / "r2", "--quiet", env=env)
    assert refused.returncode == 1
    assert "host key" in journal(tmp_path / "r2")[0]["error"]
    pre = grader("preflight", roster, env=env)
    assert pre.returncode == 4 and "host key" in pre.stdout, pre.stdout
    check = grader("self-check", test_lab, "--roster", roster, env=env)
    assert check.returncode == 2 and "host key" in check.stderr, check.stderr
    # --known-hosts names another file: first contact there, so the key is accepted and recorded in it.
    other = tmp_path / "other_known_hosts"
    pre = grader("preflight", roster, "--known-hosts", other, env=env)
    assert "host key" not in pre.stdout and "[127.0.0.1]:%d" % host.port in other.read_text()
