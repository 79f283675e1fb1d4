"""The uprobes lab text and its examples, without bpftrace (the loopback and VM tests run them for real).

The rule, as in the kprobes text: every ```bpftrace block of labs/uprobes/README.md is ALSO a file
labs/uprobes/examples/NN-name.bt, byte for byte, whose first line is `// NN-name.bt: ...`, so every inline
example of the text is one the tests run.  And no example is a graded answer in disguise: the examples teach
each technique on other functions than the questions ask about (the loopback test grades each one against
every question; this catches the plain copy early)."""

import re
from pathlib import Path

from grader.grading import strip_comments
from grader.labspec import load_lab

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "labs" / "uprobes"
EXIT_LINE = re.compile(r"(?m)^interval:s:\d+ \{ exit\(\); \}\n")


def text_blocks(lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", (LAB / "README.md").read_text(), re.S)


def example_files():
    return sorted(p.name for p in (LAB / "examples").glob("*.bt"))


def normalized(source):
    """The script as bpftrace sees it, for comparing: comments, the self-ending interval and all blanks gone."""
    return re.sub(r"\s+", "", strip_comments(EXIT_LINE.sub("", source)))


def test_every_bpftrace_block_of_the_text_is_an_example_file():
    named = {}
    for block in text_blocks("bpftrace"):
        m = re.match(r"// (\d\d-[a-z0-9-]+\.bt): ", block)
        assert m, "a bpftrace block does not start with '// NN-name.bt: ...':\n%s" % block[:200]
        named[m.group(1)] = block
    assert named and sorted(named) == example_files()
    for name, block in named.items():
        assert (LAB / "examples" / name).read_text() == block, "%s differs from the text" % name


def test_no_other_code_block_holds_a_probe():
    """A probe written in a plain or sh block would be an example no test runs."""
    for lang in ("", "sh", "text"):
        for block in text_blocks(lang):
            assert not re.search(r"(?m)^\s*u(ret)?probe:\S+\s*(/.*/)?\s*\{", block), block


def test_examples_end_themselves_and_are_no_reference_answer():
    """Each example ends itself (run by hand it stops); without that line it is still not a reference answer,
    and it probes none of the functions a question asks about."""
    solutions = {p.name: normalized(p.read_text()) for p in (LAB / "solutions").glob("u*.bt")}
    assert len(solutions) == len(load_lab("uprobes").exercises)
    for name in example_files():
        source = (LAB / "examples" / name).read_text()
        assert len(EXIT_LINE.findall(source)) == 1, "%s must end itself with one interval:s:N { exit(); } line" % name
        assert normalized(source) not in solutions.values(), name
        probes = set(re.findall(r"u(?:ret)?probe:[^:\s]+:(\w+)", strip_comments(source)))
        assert probes and not probes & {"process_order", "fetch_quote", "strtol"}, (name, probes)


def test_section_7_says_how_scripts_are_run_and_what_each_question_accepts():
    text = (LAB / "README.md").read_text()
    questions = text[text.index("## 7. The questions"):text.index("## 8.")]
    lab = load_lab("uprobes")
    assert "%d seconds" % lab.window in questions and "Ctrl-C" in questions and "exit()" in questions
    for ex in lab.exercises:
        row = next((line for line in questions.splitlines() if line.startswith("| `%s`" % ex.script)), None)
        assert row and row.count("|") == 4, "section 7 has no row for %s with its accepted forms" % ex.script
