"""Ansible inventories as rosters, read through the real ansible-inventory: groups, group_vars/, host_vars/,
[group:vars], YAML `vars:`, ranges, vault; and the one-line fallback where Ansible is not installed."""

import subprocess

import pytest

from grader import roster
from grader.errors import GraderError
from grader.roster import ansible_inventory_command, load_roster

needs_ansible = pytest.mark.skipif(ansible_inventory_command() is None,
                                   reason="ansible-inventory missing: run scripts/setup-host")


def by_student(entries):
    return {e.student: e for e in entries}


@pytest.fixture
def keys(tmp_path):
    for name in ("lab.key", "solo.key"):
        (tmp_path / name).write_text("not a real key\n")
        (tmp_path / name).chmod(0o600)          # as ssh-keygen leaves it: a 0644 key is refused, as OpenSSH does
    return tmp_path


@needs_ansible
def test_ini_inventory_with_group_vars_host_vars_and_ranges(keys):
    inv = keys / "hosts.ini"
    inv.write_text(
        "[labs]\n"
        "lab[01:03] ansible_host=10.1.0.1\n"
        "solo ansible_host=10.1.0.9 ansible_port=2200 ansible_ssh_private_key_file=solo.key\n"
        "[labs:vars]\n"
        "ansible_port=2222\n"
        "ansible_ssh_private_key_file=lab.key\n"
        "[teachers]\n"
        "prof ansible_host=10.1.0.50 bpfhol_grader_user=grader2\n")
    (keys / "group_vars").mkdir()
    (keys / "group_vars" / "labs.yml").write_text("ansible_user: bpfhol-grader\nbpfhol_section: 'CS 326-01'\n")
    (keys / "host_vars").mkdir()
    (keys / "host_vars" / "lab02.yml").write_text(
        "ansible_host: 10.1.0.2\nbpfhol_student: bob\nbpfhol_email: bob@example.edu\nbpfhol_sis_id: '20123457'\n")
    # each VM its own address (two rows on one host:port are refused: one VM graded twice)
    (keys / "host_vars" / "lab03.yml").write_text("ansible_host: 10.1.0.3\n")
    got = by_student(load_roster(inv))
    assert sorted(got) == ["bob", "lab01", "lab03", "prof", "solo"]
    for name, host in [("lab01", "10.1.0.1"), ("bob", "10.1.0.2"), ("lab03", "10.1.0.3")]:
        e = got[name]
        assert (e.host, e.port, e.user, e.key, e.problem) == (host, 2222, "bpfhol-grader", str(keys / "lab.key"), "")
        assert e.identity["section"] == "CS 326-01"
    assert got["bob"].identity == {"email": "bob@example.edu", "sis_id": "20123457", "section": "CS 326-01"}
    solo = got["solo"]       # host variables win over group variables, as in Ansible
    assert (solo.host, solo.port, solo.key) == ("10.1.0.9", 2200, str(keys / "solo.key"))
    prof = got["prof"]       # another group: none of labs' variables
    assert (prof.host, prof.port, prof.user, prof.key) == ("10.1.0.50", 22, "grader2", "")


@needs_ansible
def test_yaml_inventory_with_group_vars_host_vars_and_ranges(keys):
    inv = keys / "inventory.yml"
    inv.write_text(
        "all:\n"
        "  vars:\n"
        "    ansible_user: bpfhol-grader\n"
        "  children:\n"
        "    cohort_a:\n"
        "      vars: {ansible_port: 2201, ansible_ssh_private_key_file: lab.key, bpfhol_section: A}\n"
        "      hosts:\n"
        "        vm[1:2].lab.example:\n"
        "        alice-vm: {ansible_host: 192.0.2.10, bpfhol_student: alice, bpfhol_email: alice@example.edu,\n"
        "                   bpfhol_lms_id: '11', bpfhol_login: alice01, bpfhol_name: 'Liddell, Alice'}\n"
        "    cohort_b:\n"
        "      vars: {bpfhol_section: B}\n"
        "      hosts:\n"
        "        carol-vm: {ansible_host: 192.0.2.30, ansible_port: 2230, ansible_user: admin,\n"
        "                   ansible_ssh_private_key_file: solo.key}\n")
    (keys / "host_vars").mkdir()
    (keys / "host_vars" / "vm2.lab.example.yml").write_text("ansible_port: 2299\n")
    got = by_student(load_roster(inv))
    assert list(got) == ["vm1.lab.example", "vm2.lab.example", "alice", "carol-vm"]
    vm1, vm2, alice, carol = got.values()
    assert (vm1.host, vm1.port, vm1.user, vm1.key) == ("vm1.lab.example", 2201, "bpfhol-grader", str(keys / "lab.key"))
    assert (vm2.host, vm2.port) == ("vm2.lab.example", 2299)
    assert (alice.host, alice.port, alice.user) == ("192.0.2.10", 2201, "bpfhol-grader")
    assert alice.identity == {"name": "Liddell, Alice", "email": "alice@example.edu", "lms_id": "11",
                              "login": "alice01", "section": "A"}
    assert (carol.host, carol.port, carol.user, carol.key) == ("192.0.2.30", 2230, "admin", str(keys / "solo.key"))
    assert carol.identity == {"section": "B"}


@needs_ansible
def test_inventory_folder_and_vault(keys, monkeypatch):
    folder = keys / "inventory"
    (folder / "group_vars").mkdir(parents=True)
    (folder / "host_vars").mkdir()
    (folder / "hosts").write_text("[labs]\nlab1 ansible_host=10.2.0.1\nlab2 ansible_host=10.2.0.2\n")
    password = keys / "vault-pass"
    password.write_text("s3cret\n")
    vault = ansible_inventory_command().replace("ansible-inventory", "ansible-vault")
    # a whole vaulted group_vars file, and one vaulted value inline in host_vars
    (folder / "group_vars" / "labs.yml").write_text("ansible_port: 2345\nansible_user: grader\n")
    subprocess.run([vault, "encrypt", "--vault-password-file", str(password), str(folder / "group_vars" / "labs.yml")],
                   capture_output=True, timeout=60, check=True)
    inline = subprocess.run([vault, "encrypt_string", "--vault-password-file", str(password), "10.9.9.9",
                             "--name", "ansible_host"], capture_output=True, text=True, timeout=60, check=True)
    (folder / "host_vars" / "lab2.yml").write_text(inline.stdout)
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(password))
    got = by_student(load_roster(folder))
    assert (got["lab1"].host, got["lab1"].port, got["lab1"].user) == ("10.2.0.1", 2345, "grader")
    assert (got["lab2"].host, got["lab2"].port, got["lab2"].problem) == ("10.9.9.9", 2345, "")
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE")
    with pytest.raises(GraderError, match="ANSIBLE_VAULT_PASSWORD_FILE"):
        load_roster(folder)
    (folder / "group_vars" / "labs.yml").unlink()
    with pytest.raises(GraderError, match="ANSIBLE_VAULT_PASSWORD_FILE"):     # the inline value alone
        load_roster(folder)


@needs_ansible
def test_unreadable_inventory_is_one_line_error(tmp_path):
    bad = tmp_path / "hosts.ini"
    bad.write_text("[labs\nlab1 ansible_host=10.0.0.1\n[labs:vars]\n")
    with pytest.raises(GraderError, match="ansible-inventory could not read") as err:
        load_roster(bad, "ansible")
    assert "\n" not in str(err.value)


def test_without_ansible_the_builtin_reader_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(roster, "ansible_inventory_command", lambda: None)
    (tmp_path / "hosts.ini").write_text("[labs]\nlab[01:02] ansible_host=10.0.0.1\n"
                                        "solo ansible_host=10.0.0.9 ansible_port=2200 bpfhol_email=s@example.edu\n")
    notes = []
    with pytest.raises(GraderError, match=r"need ansible-inventory: pip install ansible-core \(or pipx"):
        load_roster(tmp_path / "hosts.ini", warn=notes.append)     # never graded as a host named lab[01:02]
    (tmp_path / "hosts.ini").write_text("[labs]\nsolo ansible_host=10.0.0.9 ansible_port=2200 "
                                        "bpfhol_email=s@example.edu\n")
    got = by_student(load_roster(tmp_path / "hosts.ini", warn=notes.append))
    assert len(notes) == 2 and "ansible-inventory not found" in notes[1]
    assert (got["solo"].host, got["solo"].port, got["solo"].identity) == ("10.0.0.9", 2200, {"email": "s@example.edu"})
    (tmp_path / "inv").mkdir()
    with pytest.raises(GraderError, match="needs ansible-inventory"):
        load_roster(tmp_path / "inv")


def test_lms_identity_rides_in_yaml_and_csv_rosters(tmp_path):
    (tmp_path / "r.yml").write_text("students:\n- {student: a, host: h, email: a@example.edu, sis_id: 'S1', "
                                    "lms_id: 7, login: a01, section: 'CS 1', name: 'A, Ann'}\n")
    [a] = load_roster(tmp_path / "r.yml")
    assert a.identity == {"name": "A, Ann", "email": "a@example.edu", "lms_id": "7", "sis_id": "S1", "login": "a01",
                          "section": "CS 1"}
    (tmp_path / "r.csv").write_text("Student,Host,Email,SIS User ID,SIS Login ID,Section\nb,h,b@example.edu,S2,b2,CS 2\n")
    [b] = load_roster(tmp_path / "r.csv")      # headers as an LMS export spells them
    assert (b.student, b.host) == ("b", "h")
    assert b.identity == {"email": "b@example.edu", "sis_id": "S2", "login": "b2", "section": "CS 2"}


def test_a_typo_in_an_inventory_variable_names_the_one_it_meant(tmp_path):
    (tmp_path / "hosts.ini").write_text("[labs]\nlab01 ansible_host=10.0.0.1 bpfhol_studnet=alice "
                                        "bpfhol_prefix=/opt/bpfhol bpfhol_grader_pubkeys=[]\n")
    with pytest.raises(GraderError, match="host lab01: unknown variable 'bpfhol_studnet' \\(did you mean "
                                          "'bpfhol_student'"):
        load_roster(tmp_path / "hosts.ini")
    (tmp_path / "hosts.ini").write_text("[labs]\nlab01 ansible_host=10.0.0.1 bpfhol_student=alice "
                                        "bpfhol_prefix=/opt/bpfhol\n")
    assert [e.student for e in load_roster(tmp_path / "hosts.ini")] == ["alice"]
