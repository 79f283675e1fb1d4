"""Course variants (grader/variants.py): what a course seed changes, and that the workloads, the grader and the
self-check agree on it.

What it trusts: the lab.yaml lists every name its questions and public answers depend on.  Attacked: a public
answer names the lab's program and functions, so on a variant it probes a binary or function the VM does not have
(tests/integration/test_course_variants.py grades the references for real on a variant: they fail, and pass
once rewritten in the course's names)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from grader import variants
from grader.errors import GraderError
from grader.labspec import load_lab

REPO = Path(__file__).resolve().parents[2]


def spec_of(lab):
    return variants.load_spec(REPO / "labs" / lab)


@pytest.mark.parametrize("lab", ["kprobes", "uprobes"])
def test_a_seed_changes_every_listed_name_and_the_same_seed_gives_the_same_names(lab):
    spec = spec_of(lab)
    listed = variants.choices_of(spec)
    assert spec["workload"]["program"] in listed and len(listed) >= 7
    courses = [variants.draw(lab, spec, "course-%d" % n) for n in range(40)]
    for names in courses:
        assert set(names) == set(listed) and all(names[k] != k for k in names)
        assert len(set(names.values())) == len(names)
        assert len(names[spec["workload"]["program"]]) <= 15
    assert variants.draw(lab, spec, "course-3") == courses[3]
    assert len({tuple(sorted(n.items())) for n in courses}) > 30          # courses differ from one another
    assert variants.draw(lab, spec, "") == {} and variants.draw(lab, spec, None) == {}


def test_rename_takes_whole_names_and_keeps_source_file_names():
    names = {"kprobeme": "filewatch", "load_config": "read_settings"}
    text = ('kprobeme\'s load_config+12 /comm == "kprobeme"/ kprobeme_x xkprobeme `workload/kprobeme.c` '
            "uprobe:/opt/bpfhol/bin/kprobeme:load_config")
    assert variants.rename(text, names) == (
        'filewatch\'s read_settings+12 /comm == "filewatch"/ kprobeme_x xkprobeme `workload/kprobeme.c` '
        "uprobe:/opt/bpfhol/bin/filewatch:read_settings")
    assert variants.rename(text, {}) == text


@pytest.mark.parametrize("bad, says", [
    ({"kprobeme": ["a_very_long_program_name"]}, "longer than the 15 bytes"),
    ({"kprobeme": ["filewatch"], "load_config": ["filewatch"]}, "listed twice"),
    ({"kprobeme": ["kprobeme"]}, "listed twice"),
    ({"kprobeme": ["File-Watch"]}, "is not a name"),
    ({"kprobeme": []}, "must list the names"),
    (["kprobeme"], "must map each name"),
])
def test_bad_variants_are_refused_in_one_line(tmp_path, bad, says):
    lab = tmp_path / "lab"
    shutil.copytree(REPO / "labs" / "kprobes", lab, ignore=shutil.ignore_patterns("__pycache__"))
    import yaml

    data = yaml.safe_load((lab / "lab.yaml").read_text())
    data["variants"] = bad
    (lab / "lab.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(GraderError, match=says):
        load_lab(str(lab), course_seed="x")


def test_the_grader_applies_the_course_names_to_program_titles_hints_and_probes():
    lab = load_lab("uprobes", course_seed="cs326-2026")
    names = lab.variant
    assert lab.workload["program"] == names["uprobeme"] and lab.workload_comm == names["uprobeme"]
    u1 = lab.exercises[0]
    assert names["process_order"] in u1.title and "process_order" not in u1.title
    assert u1.probe_on == [names["process_order"]]
    assert all("uprobeme" not in hint for hint in u1.hints.values())
    assert lab.identity()["variant"] == names
    with pytest.raises(GraderError, match="this lab lists no variants"):
        load_lab(str(REPO / "tests" / "fixtures" / "labs" / "tracepoints"), course_seed="x")


def test_the_self_check_reads_the_names_the_roles_installed(tmp_path):
    """On a VM the lab folder holds variant.json (roles/lab_text): the self-check judges with those names."""
    lab_dir = tmp_path / "uprobes"
    shutil.copytree(REPO / "labs" / "uprobes", lab_dir, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([str(REPO / "grader" / "variants.py"), str(lab_dir), "cs326", "--render",
                          str(tmp_path / "rendered"), "examples"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    drawn = json.loads(out.stdout)["names"]
    shutil.copy(tmp_path / "rendered" / "variant.json", lab_dir / "variant.json")
    assert load_lab(str(lab_dir)).variant == drawn == load_lab("uprobes", course_seed="cs326").variant
    text = (tmp_path / "rendered" / "README.md").read_text()
    assert drawn["process_order"] in text and "process_order" not in text
    example = (tmp_path / "rendered" / "examples" / "01-parse-args.bt").read_text()
    assert "/opt/bpfhol/bin/%s:%s" % (drawn["uprobeme"], drawn["parse_field"]) in example
    (lab_dir / "variant.json").write_text('{"uprobeme": "not_a_choice"}')
    with pytest.raises(GraderError, match="does not fit this lab's variants"):
        load_lab(str(lab_dir))


@pytest.mark.parametrize("lab, program", [("kprobes", "kprobeme"), ("uprobes", "uprobeme")])
def test_the_workload_built_with_the_course_header_has_the_course_names(tmp_path, lab, program):
    """variant.h as the workloads role writes it: the binary's functions, its comm and its truth log's job names
    are the course's, and none of the lab's own names is left in the symbol table."""
    spec = spec_of(lab)
    names = variants.draw(lab, spec, "cs326")
    build = tmp_path / "w"
    shutil.copytree(REPO / "labs" / lab / "workload", build)
    (build / "variant.h").write_text(variants.header(names))
    made = subprocess.run(["make", "-s", "-C", str(build)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    symbols = subprocess.run(["nm", str(build / program)], capture_output=True, text=True).stdout
    for canonical, drawn in names.items():
        if canonical != program:
            assert " %s\n" % drawn in symbols and " %s\n" % canonical not in symbols, canonical
    strings = subprocess.run(["strings", str(build / program)], capture_output=True, text=True).stdout.split()
    assert names[program] in strings and program not in strings
