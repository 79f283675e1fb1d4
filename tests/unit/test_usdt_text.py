"""The USDT lab text and its examples, without bpftrace (tests/integration/test_usdt_lab_loopback.py runs them).

The rule of the other labs' texts: every ```bpftrace block of labs/usdt/README.md is also a file
labs/usdt/examples/NN-name.bt, byte for byte; each example ends itself and attaches none of the probes a
question asks about; the questions' section says how scripts are run and what each question accepts."""

import re
from pathlib import Path

from grader.grading import probed_functions, strip_comments
from grader.labspec import load_lab

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = REPO / "labs" / "usdt"
LAB = load_lab("usdt")
EXIT_LINE = re.compile(r"(?m)^interval:s:\d+ \{ exit\(\); \}\n")


def text_blocks(lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", (LAB_DIR / "README.md").read_text(), re.S)


def test_every_bpftrace_block_of_the_text_is_an_example_file():
    named = {}
    for block in text_blocks("bpftrace"):
        m = re.match(r"// (\d\d-[a-z0-9-]+\.bt): ", block)
        assert m, "a bpftrace block does not start with '// NN-name.bt: ...':\n%s" % block[:200]
        named[m.group(1)] = block
    assert named and sorted(named) == sorted(p.name for p in (LAB_DIR / "examples").glob("*.bt"))
    for name, block in named.items():
        assert (LAB_DIR / "examples" / name).read_text() == block, "%s differs from the text" % name


def test_no_other_code_block_holds_a_probe():
    for lang in ("", "c", "sh"):
        for block in text_blocks(lang):
            assert not re.search(r"(?m)^\s*usdt:\S+\s*(/.*/)?\s*\{", block), block


def test_examples_end_themselves_and_probe_nothing_a_question_asks_about():
    asked = {f for ex in LAB.exercises for f in ex.probe_on}
    assert asked == {"order_taken", "payment_made"}
    for path in sorted((LAB_DIR / "examples").glob("*.bt")):
        source = path.read_text()
        assert len(EXIT_LINE.findall(source)) == 1, "%s must end itself with one interval:s:N { exit(); }" % path.name
        probes = set(probed_functions(source))
        assert probes and not probes & asked, (path.name, probes)
    for path in (LAB_DIR / "solutions").glob("s*.bt"):
        assert not EXIT_LINE.search(path.read_text()) and "exit()" not in strip_comments(path.read_text())


def test_the_questions_section_says_how_scripts_run_and_what_each_accepts():
    text = (LAB_DIR / "README.md").read_text()
    questions = text[text.index("## 5. The questions"):text.index("## 6.")]
    assert "Ctrl-C" in questions and "exit()" in questions and "%d s" % LAB.window in questions
    for ex in LAB.exercises:
        para = re.search(r"\*\*%s \(%d points\)\.\*\*(.*?)(?:\n\n|\Z)" % (re.escape(ex.script), ex.points), questions,
                         re.S)
        assert para and "Accepted:" in para.group(1), "no paragraph for %s saying what it accepts" % ex.script
