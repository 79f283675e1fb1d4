"""grader/collect.py without hosts: deadlines, extensions, late marks, and a collection that changed on disk."""

import hashlib
import json
import os
import time

import pytest

from grader import collect
from grader.errors import GraderError
from grader.grading import ExerciseResult, StudentResult
from grader.labspec import load_lab


@pytest.fixture(scope="module")
def lab():
    return load_lab("uprobes")


def manifest_in(results, lab, student, mtimes):
    """A collection as collect_one writes it: scripts and manifest.json."""
    folder = collect.collection_dir(results, student)
    folder.mkdir(parents=True)
    files = {}
    for ex in lab.exercises:
        text = "// %s of %s\nuprobe:/x:f { }\n" % (ex.id, student)
        (folder / ex.script).write_text(text)
        files[ex.script] = {"status": "ok", "path": "/home/s/answers/" + ex.script, "mtime": mtimes.get(ex.id, 0),
                            "size": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    manifest = {"student": student, "host": "vm:22", "collected_at": time.time(), "files": files}
    (folder / collect.MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_times_with_and_without_a_zone():
    assert collect.parse_time("2026-12-14T23:59:00Z") == 1797292740
    assert collect.parse_time("2026-12-15T00:59:00+01:00") == 1797292740
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        assert collect.parse_time("2026-12-14 23:59") == 1797292740
    finally:
        del os.environ["TZ"]
        time.tzset()
    with pytest.raises(GraderError, match="is not a time: write it as 2026-12-14T23:59"):
        collect.parse_time("friday")


def test_extensions_from_csv_and_yaml(tmp_path):
    csv_file = tmp_path / "ext.csv"
    csv_file.write_text("\ufeffstudent,deadline\nbob,2026-12-16T23:59Z\n")
    assert collect.load_extensions(csv_file) == {"bob": collect.parse_time("2026-12-16T23:59Z")}
    yml = tmp_path / "ext.yml"
    yml.write_text("carol: 2026-12-17T12:00Z\n")
    assert collect.load_extensions(yml) == {"carol": collect.parse_time("2026-12-17T12:00Z")}
    bad = tmp_path / "bad.csv"
    bad.write_text("name,when\nbob,2026-12-16\n")
    with pytest.raises(GraderError, match="columns must be student,deadline"):
        collect.load_extensions(bad)
    (tmp_path / "list.yml").write_text("- bob\n")
    with pytest.raises(GraderError, match="must map each student to a deadline"):
        collect.load_extensions(tmp_path / "list.yml")
    with pytest.raises(GraderError, match="cannot read the extensions file"):
        collect.load_extensions(tmp_path / "nope.csv")


def graded(lab):
    exercises = [ExerciseResult(id=ex.id, title=ex.title, passed=True, score=ex.points, max_score=ex.points,
                                reason="ok", feedback="") for ex in lab.exercises]
    return StudentResult(student="ana", status="graded", score=sum(e.score for e in exercises),
                         max_score=lab.max_score, exercises=exercises)


@pytest.mark.parametrize("late", ["flag", "refuse"])
def test_a_script_changed_after_the_deadline(tmp_path, lab, late):
    deadline = 1_800_000_000
    manifest = manifest_in(tmp_path, lab, "ana", {"u1": deadline - 5, "u2": deadline + 5, "u3": deadline,
                                                  "u4": deadline - 100})
    sub = collect.submission_of(lab, manifest, tmp_path, deadline, late)
    assert ("u2.bt" in sub.uploads) == (late == "flag") and len(sub.uploads) == 3 + (late == "flag")
    result = collect.mark_late(graded(lab), lab, manifest, deadline, late)
    by = {e.id: e for e in result.exercises}
    assert result.submitted["late"] == {"u2": deadline + 5}
    assert by["u2"].feedback.startswith("late: u2.bt was changed at 2027-01-15T08:00:05Z, after the deadline" if
                                        late == "flag" else "u2.bt was changed at")
    assert by["u2"].passed == (late == "flag")
    assert result.score == lab.max_score - (0 if late == "flag" else by["u2"].max_score)
    assert all(by[i].feedback == "" for i in ("u1", "u3", "u4"))      # at the deadline itself is in time
    # no deadline: nothing is late
    assert collect.late_scripts(manifest, None) == {}


def test_a_collection_edited_on_the_instructors_disk_is_not_graded(tmp_path, lab):
    manifest = manifest_in(tmp_path, lab, "ana", {})
    (collect.collection_dir(tmp_path, "ana") / "u3.bt").write_text("BEGIN { }\n")
    sub = collect.submission_of(lab, manifest, tmp_path)
    assert "changed after it was collected" in sub.problem and "--recollect" in sub.problem


def test_a_kept_collection_is_found_again_and_only_for_its_student(tmp_path, lab):
    manifest_in(tmp_path, lab, "ana", {})
    assert collect.load_manifest(tmp_path, "ana")["student"] == "ana"
    assert collect.load_manifest(tmp_path, "bob") is None
    (collect.collection_dir(tmp_path, "ana") / collect.MANIFEST).write_text("{not json")
    assert collect.load_manifest(tmp_path, "ana") is None


def test_the_collect_reply_is_held_to_its_declared_format():
    from grader.agent import REPLY_FORMAT, reply_problems

    base = {"ok": True, "reply_format": REPLY_FORMAT, "agent_version": 4}
    good = dict(base, files=[{"path": "/a/u1.bt", "status": "ok", "source": "x", "sha256": "0" * 64, "size": 1,
                              "mtime": 1.5}, {"path": "/a/u2.bt", "status": "missing", "error": "no such file"}])
    assert reply_problems(good, kind="collect") == []
    assert reply_problems(base, kind="collect") == ["field 'files' missing"]
    assert reply_problems(dict(base, files=[{"status": "stolen"}]), kind="collect")
    assert reply_problems(dict(base, files=[{"status": "ok", "size": "1"}]), kind="collect") == \
        ["files[0].size is str"]
    assert reply_problems(dict(base, files=[{"status": "ok", "mtime": True}]), kind="collect") == \
        ["files[0].mtime is bool"]
