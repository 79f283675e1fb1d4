"""scripts/release-student: the student edition holds what a student needs for `vagrant up` and no answer.

What it trusts: that the answers live where ANSWER_SOURCES says (labs/*/solutions, the tests' passing fixtures)
and that the lab folders ship whole otherwise.  Attacked here: a reference answer copied into an example (with a
new comment), or quoted in a lab text's code block, stops the release; the VM tests grade every script the
edition holds against every question (tests/vm/test_grading_vm.py) and provision the VM from the edition."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from student_edition import RELEASE, build_edition

REPO = Path(__file__).resolve().parents[2]


def release(*args, cwd=REPO, tool=RELEASE):
    return subprocess.run([str(tool), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    return build_edition(tmp_path_factory.mktemp("edition") / "course")


def test_the_edition_has_what_vagrant_up_needs_and_no_answers(edition):
    for path in ("vagrant/Vagrantfile", "vagrant/answers/README.md", "playbooks/lab.yml", "roles/lab_text",
                 "images/build-box", "scripts/lab-up", "scripts/setup-host", "grader/agent.py", "ansible.cfg",
                 "labs/kprobes/README.md", "labs/kprobes/workload/kprobeme.c", "labs/kprobes/lab.yaml",
                 "labs/uprobes/checks.py", "labs/kprobes/checks/__init__.py", "requirements.txt"):
        assert (edition / path).exists(), path
    assert (edition / "playbooks" / "roles").resolve() == (edition / "roles").resolve()
    for path in ("tests", "bench", "gradescope", "docs", ".ci", "labs/kprobes/solutions", "labs/uprobes/solutions",
                 "scripts/release-student", "scripts/test"):
        assert not (edition / path).exists(), path
    assert "self-check" in (edition / "README.md").read_text()
    assert "release-student" in (edition / "STUDENT-EDITION").read_text()
    # the only scripts students receive are the texts' examples, which the VM tests grade against every question
    scripts = sorted(p.relative_to(edition).as_posix() for p in edition.rglob("*.bt"))
    assert scripts and all(p.startswith("labs/") and "/examples/" in p for p in scripts), scripts
    # and nothing in it is an answer, in a .bt file or in a text's code block
    answers = {p.read_text() for p in REPO.glob("labs/*/solutions/*.bt")}
    for path in edition.rglob("*"):
        if path.is_file() and path.suffix in (".bt", ".md"):
            assert not any(a.strip() in path.read_text() for a in answers), path


def test_the_edition_passes_its_own_checks(edition):
    """ansible's syntax check of the playbook and Vagrant's own check of the Vagrantfile, run in the edition
    (no instructor file is missing from it)."""
    venv = REPO / ".venv" / "bin"
    syntax = subprocess.run([str(venv / "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                             "playbooks/lab.yml"], cwd=edition, capture_output=True, text=True, timeout=300,
                            env={"PATH": "%s:/usr/bin:/bin" % venv, "ANSIBLE_CONFIG": str(edition / "ansible.cfg"),
                                 "HOME": str(edition)})
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    if shutil.which("vagrant"):      # as tests/unit/test_vm_settings.py runs it
        env = {k: v for k, v in os.environ.items() if not k.startswith("BPFHOL_")}
        env.update(BPFHOL_ACCEL="tcg", VAGRANT_HOME=str(edition.parent / "vagrant.d"))
        check = subprocess.run(["vagrant", "validate"], cwd=edition / "vagrant", env=env, capture_output=True,
                               text=True, timeout=300)
        assert check.returncode == 0 and "validated successfully" in check.stdout, check.stdout + check.stderr


@pytest.fixture
def clone(tmp_path):
    """A clone of this repository at HEAD (its own scripts/release-student), to plant answers in."""
    dest = tmp_path / "instructor"
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True, timeout=300)
    subprocess.run(["git", "-C", str(dest), "config", "user.email", "t@example.invalid"], check=True)
    subprocess.run(["git", "-C", str(dest), "config", "user.name", "t"], check=True)
    for path in ("scripts/release-student", "docs/student-edition/README.md"):     # this tree's, not HEAD's
        shutil.copy2(REPO / path, dest / path)
    commit_all(dest)
    return dest


def commit_all(repo):
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "plant"], check=True)


def test_a_reference_answer_in_an_example_stops_the_release(clone, tmp_path):
    answer = (clone / "labs" / "uprobes" / "solutions" / "u2.bt").read_text()
    (clone / "labs" / "uprobes" / "examples" / "09-handy.bt").write_text("// a handy example\n" + answer + "\n\n")
    commit_all(clone)
    r = release(tmp_path / "out", cwd=clone, tool=clone / "scripts" / "release-student")
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert r.stderr.count("\n") == 1
    assert "labs/uprobes/examples/09-handy.bt" in r.stderr and "labs/uprobes/solutions/u2.bt" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_reference_answer_quoted_in_a_lab_text_stops_the_release(clone, tmp_path):
    answer = (clone / "labs" / "kprobes" / "solutions" / "q3.bt").read_text()
    with open(clone / "labs" / "kprobes" / "README.md", "a") as text:
        text.write("\n## Appendix\n\n```\n" + answer + "```\n")
    r = release(tmp_path / "out", "--worktree", cwd=clone, tool=clone / "scripts" / "release-student")
    assert r.returncode == 2 and "labs/kprobes/README.md" in r.stderr and "q3.bt" in r.stderr, r.stderr


def test_git_edition_commits_and_a_rerun_changes_nothing(tmp_path):
    dest = tmp_path / "course"
    first = release(dest, "--git")
    assert first.returncode == 0, first.stderr
    assert "(commit " in first.stdout
    log = subprocess.run(["git", "-C", str(dest), "log", "--oneline"], capture_output=True, text=True).stdout
    assert log.count("\n") == 1 and "Student edition from" in log
    tracked = subprocess.run(["git", "-C", str(dest), "ls-files"], capture_output=True, text=True).stdout.split()
    assert "vagrant/Vagrantfile" in tracked and not any("solutions/" in p for p in tracked)
    again = release(dest, "--git")
    assert again.returncode == 0 and "(commit unchanged)" in again.stdout, again.stdout + again.stderr


def test_bad_destinations_are_refused_in_one_line(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("mine")
    r = release(busy)
    assert r.returncode == 2 and "not empty and not a student edition" in r.stderr and r.stderr.count("\n") == 1
    assert (busy / "thesis.tex").read_text() == "mine"
    r = release(REPO / "build" / "edition")
    assert r.returncode == 2 and "inside the instructor's repository" in r.stderr
    r = release(tmp_path / "x", "--ref", "no-such-ref")
    assert r.returncode == 2 and r.stderr.startswith("release-student: error: git") and r.stderr.count("\n") == 1
