"""Text from hosts and students: made safe where it enters (agent replies, the journal) and again in
every report writer; an unexpected failure while writing reports is exit 5 and one line."""

import json
import xml.etree.ElementTree as ET

import pytest

from grader import cli, grading
from grader.backend import parse_reply
from grader.errors import HostError
from grader.journal import Journal
from grader.labspec import load_lab
from grader.reports import clean, junit
from grader.safetext import safe_text, safe_tree

POISON = "a\ud800b\ufffe\uffffc\x85\x9bd\x00\x0b\x0c\r\x1b[31me\x1b]0;title\x07f\x1b]8;;x\x1b\\g\th\ni"


def test_safe_text_replaces_surrogates_and_drops_what_xml_cannot_hold():
    assert safe_text(POISON) == "a\ufffdbcdefg\th\ni"
    assert safe_text(b"ok \xff\xc0\x80 \xed\xa0\x80") == "ok \ufffd\ufffd\ufffd \ufffd\ufffd\ufffd"
    assert safe_text("é ✔ 😀 \u2028") == "é ✔ 😀 \u2028"          # real text is untouched
    ET.fromstring("<a>%s</a>" % safe_text(POISON).encode("utf-8").decode())
    assert clean(POISON, 3) == "a\ufffdb"


def test_safe_tree_cleans_keys_values_depth_and_non_numbers():
    doc = safe_tree({"k\ud800": ["v\uffff", 1, True, None, float("nan"), float("inf"), {"x": "\x07"}]})
    assert doc == {"k\ufffd": ["v", 1, True, None, None, None, {"x": ""}]}
    deep = []
    for _ in range(500):
        deep = [deep]
    flat = safe_tree(deep)
    depth = 0
    while isinstance(flat, list):
        flat, depth = flat[0], depth + 1
    assert flat is None and depth == 64


def test_parse_reply_is_the_boundary():
    line = json.dumps({"ok": True, "scripts": [{"stderr": "x\ud800\uffff@"}]}).encode().replace(b"@", b"\xff")
    reply = parse_reply(b"noise\n" + line + b"\n", b"\xff", 0, "h")
    assert reply["scripts"][0]["stderr"] == "x\ufffd\ufffd"
    with pytest.raises(HostError) as err:
        parse_reply("[" * 100000 + "\n", "", 0, "h")                   # RecursionError in json: still one line
    assert err.value.kind == "agent" and "not JSON" in str(err.value)
    with pytest.raises(HostError) as err:
        parse_reply('{"ok": false, "error": "busy: job 123 still runs"}', "", 1, "h")
    assert err.value.kind == "busy" and "job 123" in str(err.value)
    with pytest.raises(HostError) as err:
        parse_reply("", "sh: 1: \x1b[2J\ud800boom", 2, "h")
    assert "\x1b" not in str(err.value) and "\ud800" not in str(err.value) and "boom" in str(err.value)


def test_journal_load_cleans_text_keeps_ids_skips_wrong_shapes(tmp_path):
    lab = load_lab("kprobes")
    ok = {"student": "id\x1b[1m", "status": "not_gradable", "error": "e\ud800"}
    lines = [json.dumps(ok), json.dumps({"student": "n", "status": "graded", "score": "ten"}),
             json.dumps({"student": "m", "status": "graded", "exercises": [{"id": 1, "score": 0, "max_score": 1}]}),
             json.dumps({"student": 7, "status": "graded"}), json.dumps({"student": "w", "status": "weird"}),
             "[" * 5000]
    (tmp_path / "journal.jsonl").write_text("\n".join(lines) + "\n")
    done = Journal(tmp_path).load()
    assert list(done) == ["id\x1b[1m"]                                  # the id as the roster wrote it
    assert done["id\x1b[1m"].error == "e\ufffd"
    xml = junit.render(list(done.values()), lab)
    ET.fromstring(xml.encode())


def test_unexpected_report_error_is_exit_5_one_line(tmp_path, monkeypatch, capsys):
    lab = load_lab("kprobes")
    journal = Journal(tmp_path)
    journal.record(grading.not_gradable("alice", "down"), lab)

    def broken(results, lab):
        raise ValueError("a writer bug")

    monkeypatch.setattr(junit, "render", broken)
    code = cli.main(["report", "--lab", "kprobes", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_REPORT_BUG == 5
    assert err.count("\n") == 1 and err.startswith("bpfhol-grade: error: could not make the reports")
    assert "ValueError: a writer bug" in err and "journal.jsonl" in err and "Traceback" not in err
    assert "a writer bug" in (tmp_path / "report-error.txt").read_text()
