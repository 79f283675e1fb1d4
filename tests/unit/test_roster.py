import pytest

from grader.errors import GraderError
from grader.roster import load_roster


def test_yaml_csv_ini_and_ssh_config(tmp_path):
    key = tmp_path / "k"
    key.write_text("x")
    key.chmod(0o600)
    (tmp_path / "r.yml").write_text("students:\n- {student: a, host: 10.0.0.1, port: 2222, user: g, key: k}\n")
    [a] = load_roster(tmp_path / "r.yml")
    assert (a.student, a.host, a.port, a.user, a.key, a.problem) == ("a", "10.0.0.1", 2222, "g", str(key), "")

    (tmp_path / "r.csv").write_text("student,host,port,user,key\nb,h1,22,g,%s\n" % key)
    [b] = load_roster(tmp_path / "r.csv")
    assert b.student == "b" and b.problem == ""

    (tmp_path / "inv").write_text("[lab]\nc ansible_host=192.0.2.5 ansible_port=2200 ansible_user=g\n"
                                  "[lab:vars]\nfoo=bar\n")
    [c] = load_roster(tmp_path / "inv")
    assert (c.student, c.host, c.port, c.user) == ("c", "192.0.2.5", 2200, "g")

    (tmp_path / "inv.yml").write_text("all:\n  children:\n    lab:\n      hosts:\n        d: {ansible_host: h, ansible_port: 2201}\n")
    [d] = load_roster(tmp_path / "inv.yml")
    assert (d.student, d.host, d.port) == ("d", "h", 2201)

    # what `vagrant ssh-config` prints
    (tmp_path / "vm.cfg").write_text("Host default\n  HostName 127.0.0.1\n  User vagrant\n  Port 2222\n"
                                     "  IdentityFile %s\n  StrictHostKeyChecking no\n" % key)
    [e] = load_roster(tmp_path / "vm.cfg")
    assert (e.student, e.host, e.port, e.user, e.key) == ("default", "127.0.0.1", 2222, "vagrant", str(key))


def test_bad_rows_become_problems_not_errors(tmp_path):
    (tmp_path / "r.yml").write_text(
        "- {student: a, host: h}\n- {student: a, host: h2}\n- {host: h3}\n- {student: b}\n"
        "- {student: c, host: h, key: /nonexistent/key}\n- {student: 'x; rm -rf /', host: 'h; id'}\n- 7\n")
    rows = load_roster(tmp_path / "r.yml")
    problems = {r.student: r.problem for r in rows}
    assert problems["a"] == ""
    assert "duplicate" in problems["a (row 2)"]
    assert "no student id" in problems["row 3"]
    assert "no host" in problems["b"]
    assert "key file not found" in problems["c"]
    assert "not a host name" in problems["x; rm -rf /"]
    assert "not a mapping" in problems["row 7"]


@pytest.mark.parametrize("text,msg", [("{a: [", "not valid YAML"), ("42", "expected a list"), ("", "expected a list")])
def test_unreadable_roster_is_one_line_error(tmp_path, text, msg):
    (tmp_path / "r.yml").write_text(text)
    with pytest.raises(GraderError, match=msg):
        load_roster(tmp_path / "r.yml")


def test_yaml_is_loaded_safely(tmp_path):
    (tmp_path / "r.yml").write_text("- !!python/object/apply:os.system ['touch %s/pwned']\n" % tmp_path)
    with pytest.raises(GraderError):
        load_roster(tmp_path / "r.yml")
    assert not (tmp_path / "pwned").exists()
