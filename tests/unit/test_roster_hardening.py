"""Roster input that used to forge rows or crash: control characters in ids (roster and submissions folder
names), ssh_config Match blocks, a CSV with a UTF-8 byte-order mark (Excel's "CSV UTF-8"), typo'd fields."""

import json
from pathlib import Path

from grader.labspec import load_lab
from grader.reports import table
from grader.roster import id_problem, load_roster
from grader.submissions import load_submissions
from grader import grading

REPO = Path(__file__).resolve().parents[2]


def test_newline_in_an_id_cannot_print_a_forged_row(tmp_path):
    key = tmp_path / "k"
    key.write_text("x")
    key.chmod(0o600)
    (tmp_path / "r.yml").write_text(
        'students:\n  - {student: "mallory\\nalice    10/10   ok   ok   ok", host: 10.0.0.1, key: %s}\n'
        '  - {student: alice, host: 10.0.0.2, key: %s}\n' % (key, key))
    entries = load_roster(tmp_path / "r.yml")
    bad, good = entries
    assert "\n" not in bad.student and bad.student.startswith("mallory\\x0a")
    assert "control characters (U+000A)" in bad.problem and not good.problem
    lab = load_lab("kprobes")
    text = table.render([grading.not_gradable(e.student, e.problem or "x") for e in entries], lab)
    assert not any(line.startswith("alice    10/10") for line in text.splitlines()), text
    assert len(text.splitlines()) == 4          # header, two students, the count line


def test_every_kind_of_control_character_is_refused_and_plain_unicode_is_not():
    for bad in ["a\rb", "a\x1b[31mb", "a\x07", "a\x7fb", "a\x85b", "a\u202eb", "a\u2028b", "a\tb", "a\x00b"]:
        shown, problem = id_problem(bad)
        assert problem and all(c.isprintable() for c in shown), (bad, shown)
    for good in ["alice", "José Müller", "李雷", "o'brien", "a b"]:
        assert id_problem(good) == (good, "")


def test_a_submissions_folder_named_with_a_newline_is_not_gradable(tmp_path):
    lab = load_lab("kprobes")
    (tmp_path / "subs" / "eve\nalice 10 of 10").mkdir(parents=True)
    (tmp_path / "subs" / "bob").mkdir()
    subs = {s.student: s for s in load_submissions(tmp_path / "subs", lab)}
    assert set(subs) == {"eve\\x0aalice 10 of 10", "bob"}
    assert "control characters" in subs["eve\\x0aalice 10 of 10"].problem and not subs["bob"].problem


def test_ssh_config_with_match_blocks_reads_the_hosts(tmp_path):
    notes = []
    (tmp_path / "vm.cfg").write_text(
        "Host alice\n  HostName 10.0.0.11\n  User bpfhol-grader\n"
        "Match host bob exec \"touch /tmp/bpfhol-match-pwned\"\n  User root\n"
        "Match all\n  ServerAliveInterval 5\n"
        "Host bob\n  HostName 10.0.0.12\n  Port 2222\n")
    entries = load_roster(tmp_path / "vm.cfg", warn=notes.append)
    assert [(e.student, e.host, e.port, e.user) for e in entries] == [
        ("alice", "10.0.0.11", 22, "bpfhol-grader"), ("bob", "10.0.0.12", 2222, "bpfhol-grader")]
    assert len(notes) == 1 and "2 Match block(s) ignored" in notes[0]


def test_csv_roster_with_a_byte_order_mark(tmp_path):
    (tmp_path / "r.csv").write_bytes("\ufeffSIS User ID,student,host\r\n4711,alice,10.0.0.1\r\n".encode("utf-8"))
    [e] = load_roster(tmp_path / "r.csv")
    assert (e.student, e.host) == ("alice", "10.0.0.1")
    assert "4711" in e.identity.values(), e.identity


def test_key_files_are_checked_before_connecting(tmp_path):
    import pytest

    from grader.errors import GraderError

    priv, pub, huge = tmp_path / "id", tmp_path / "id.pub", tmp_path / "huge"
    priv.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
    priv.chmod(0o600)
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE bpfhol\n")
    with open(huge, "wb") as fh:                 # sparse 2 GiB: must be refused by its size, never read
        fh.truncate(2 << 30)
    rows = "students:\n" + "".join("  - {student: s%d, host: 10.0.0.%d, key: %s}\n" % (i, i, k)
                                   for i, k in enumerate([priv, pub, huge, tmp_path / "missing"], 1))
    (tmp_path / "r.yml").write_text(rows)
    by = {e.student: e.problem for e in load_roster(tmp_path / "r.yml")}
    assert by["s1"] == ""
    assert "is a public key: give the private key (%s)" % priv in by["s2"]
    assert "2147483648 bytes: not an SSH private key" in by["s3"]
    assert "key file not found" in by["s4"]
    # one key file for the whole cohort, and it is wrong: one line, before any student is tried
    for bad in (pub, tmp_path / "missing"):
        (tmp_path / "all.yml").write_text("students:\n" + "".join(
            "  - {student: s%d, host: 10.0.0.%d, key: %s}\n" % (i, i, bad) for i in range(3)))
        with pytest.raises(GraderError, match="used by 3 rows"):
            load_roster(tmp_path / "all.yml")


def test_a_typo_in_a_yaml_roster_names_the_field_it_meant(tmp_path):
    import pytest

    from grader.errors import GraderError

    for typo, meant in (("studnet", "student"), ("prot", "port"), ("hots", "host")):
        row = {"student": "alice", "host": "10.0.0.1", "port": 2222}
        row[typo] = row.pop(meant, "x")
        (tmp_path / "r.yml").write_text("students:\n- %s\n" % json.dumps(row))
        with pytest.raises(GraderError) as err:
            load_roster(tmp_path / "r.yml")
        line = str(err.value)
        assert "\n" not in line and "student 1: unknown field '%s' (did you mean '%s'?" % (typo, meant) in line
    (tmp_path / "r.yml").write_text("students:\n- {student: a, host: h, colour: red}\n")
    with pytest.raises(GraderError, match="unknown field 'colour' \\(known: student, host"):
        load_roster(tmp_path / "r.yml")


def test_an_lms_export_csv_keeps_its_own_columns_but_a_typo_stops(tmp_path):
    import pytest

    from grader.errors import GraderError

    (tmp_path / "c.csv").write_bytes("\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Last Access,Last name,host\r\n"
                                     "\"Liddell, Alice\",77,2012,alice01,CS 326-01,2026-11-30,L,10.0.0.1\r\n"
                                     .encode("utf-8"))
    [e] = load_roster(tmp_path / "c.csv")
    # a Canvas export: the student id is the SIS Login ID, the Student column the name, ID Canvas's user ID
    assert (e.student, e.host, e.identity["name"], e.identity["lms_id"]) == ("alice01", "10.0.0.1", "Liddell, Alice",
                                                                             "77")
    assert e.identity["sis_id"] == "2012" and e.identity["login"] == "alice01" and e.identity["section"] == "CS 326-01"
    (tmp_path / "t.csv").write_text("student,hots,port\nalice,10.0.0.1,22\n")
    with pytest.raises(GraderError, match="CSV column unknown field 'hots' \\(did you mean 'host'"):
        load_roster(tmp_path / "t.csv")


def test_the_inventory_variables_the_roles_use_are_known_to_the_roster():
    """An inventory shared with the provisioning playbook carries the roles' bpfhol_* variables: not typos."""
    import re

    from grader import roster

    defaults = REPO.joinpath("roles").glob("*/defaults/main.yml")
    names = {m for f in defaults for m in re.findall(r"(?m)^(bpfhol_[a-z0-9_]+):", f.read_text())}
    assert names and names <= roster.USED_VARS | roster.INVENTORY_OTHER_VARS, names - roster.INVENTORY_OTHER_VARS
