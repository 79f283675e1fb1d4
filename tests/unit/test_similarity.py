"""The similarity report's detector (grader/similarity.py, winnowing): a copy disguised by renaming maps and
variables, new comments and layout is found, between students and against the lab's reference; different
approaches, the lab's handed-out examples and what most of a cohort writes are not flagged."""

import re
import time
from pathlib import Path

from grader import similarity
from grader.labspec import load_lab

LAB = load_lab("kprobes")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scripts" / "kprobes"


def disguise(source):
    """What a copier does in a minute: other map and variable names, comments gone or added, layout changed."""
    source = re.sub(r"/\*.*?\*/|//[^\n]*", "", source, flags=re.S)
    source = re.sub(r"@(\w+)", lambda m: "@my_" + m.group(1)[::-1], source)
    source = re.sub(r"\$(\w+)", lambda m: "$v_" + m.group(1), source)
    return "// my own work\n" + re.sub(r"\s+", "  ", source).replace("{", "{\n")


def reference(q):
    return (LAB.path / "solutions" / ("%s.bt" % q)).read_text()


def fixture(name, q):
    return (FIXTURES / name / ("%s.bt" % q)).read_text()


def test_a_disguised_copy_of_another_student_is_found():
    scripts = {"ann": {"q4": fixture("variants_c", "q4")}, "bob": {"q4": disguise(fixture("variants_c", "q4"))},
               "cy": {"q4": fixture("variants_a", "q4")}}
    pairs = [p for p in similarity.compare(scripts, LAB) if not p.against_reference]
    assert [(p.question, p.first, p.second) for p in pairs] == [("q4", "ann", "bob")]
    assert pairs[0].score == 1.0 and "@my_" in pairs[0].second_source


def test_a_disguised_copy_of_the_reference_is_found_and_names_no_student():
    scripts = {"dee": {"q3": disguise(reference("q3"))}, "eve": {"q3": fixture("variants_a", "q3")}}
    pairs = similarity.compare(scripts, LAB)
    assert [(p.first, p.second, p.against_reference) for p in pairs] == [("dee", "", True)]
    assert pairs[0].second_source == reference("q3")


def test_different_approaches_and_handed_out_examples_are_not_flagged():
    example = (LAB.path / "examples" / "04-open-stack.bt").read_text()
    scripts = {"fay": {"q4": fixture("variants_a", "q4"), "q1": example},
               "gus": {"q4": fixture("variants_d", "q4"), "q1": example}}
    assert similarity.compare(scripts, LAB) == []
    assert len(similarity.fingerprints(example)) >= similarity.MIN_FINGERPRINTS   # excluded, not too short


def test_what_most_of_the_cohort_writes_is_the_questions_own_and_one_liners_are_too_short():
    common = fixture("variants_b", "q3")
    scripts = {"s%d" % i: {"q3": common} for i in range(6)}
    scripts["s9"] = {"q3": "kprobe:do_sys_openat2 { @[comm] = count(); }"}
    scripts["s8"] = {"q3": "kprobe:do_sys_openat2 { @x[comm] = count(); }"}
    assert similarity.compare(scripts, LAB) == []


def test_two_hundred_students_are_compared_in_well_under_a_second():
    names = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    scripts = {"s%03d" % i: {q: disguise(fixture(names[(i + k) % len(names)], q)) if i % 3 else
                             fixture(names[(i * 7 + k) % len(names)], q) for k, q in enumerate(("q1", "q2", "q3", "q4"))
                             if (FIXTURES / names[(i + k) % len(names)] / ("%s.bt" % q)).is_file()}
               for i in range(200)}
    start = time.monotonic()
    pairs = similarity.compare(scripts, LAB)
    assert time.monotonic() - start < 1.5
    assert pairs and all(p.score >= similarity.THRESHOLD for p in pairs)


def test_pairs_on_the_dashboard_keep_hostile_names_and_scripts_as_text():
    from grader import grading
    from grader.reports import html_report

    evil_name, evil_source = '<img src=x onerror=alert(1)>', disguise(reference("q3")) + "\n</pre><script>x()</script>"
    pair = similarity.Pair("q3", evil_name, "", 0.93, evil_source, reference("q3"))
    page = html_report.render([grading.not_gradable(evil_name, "x")], LAB, similar=[pair])
    section = page.split('<section id="similarity">')[1].split("</section>")[0]
    assert "<img" not in section and "<script" not in section and "&lt;/pre&gt;&lt;script&gt;" in section
    assert 'data-score="0.93"' in section and "93% shared" in section and "the lab's reference" in section
