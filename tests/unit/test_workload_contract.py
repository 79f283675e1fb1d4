"""Every lab's workload keeps the workload contract (docs/workload-contract.md), checked on this host for real:
each labs/<lab>/workload/ is built from its Makefile (also with a course's variant.h), and its graded program is
run the way the grader's agent runs it: the arguments its lab.yaml draws (the window shortened to 2 s), then
--truth-log, --hold and --notify-fd 1 with stdout a pipe.  Parametrised over every lab folder, so a new lab is
held to the contract without a line here.  About 5 s per lab (two builds, three short runs)."""

import json
import os
import random
import re
import select
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from grader import variants
from grader.labmanifest import read_manifest
from grader.labspec import load_lab

REPO = Path(__file__).resolve().parents[2]
LABS = sorted(p.name for p in (REPO / "labs").iterdir() if (p / "lab.yaml").is_file())
WINDOW = 2                 # seconds: the shortest window a lab.yaml may give (grader/labspec.py)
COURSE_SEED = "workload-contract-test"


def build(lab, dest, names=None):
    """A copy of the lab's workload folder, built by its Makefile's default target (with variant.h when the
    course's names are given, as roles/workloads writes it); returns the folder."""
    src = REPO / "labs" / lab / "workload"
    assert (src / "Makefile").is_file(), "labs/%s/workload/ needs a Makefile (the contract's build)" % lab
    shutil.copytree(src, dest, ignore=lambda d, files: [f for f in files if not re.search(r"\.(c|h|S|d)$|^Makefile$", f)])
    if names:
        (dest / "variant.h").write_text(variants.header(names))
    made = subprocess.run(["make", "-s", "-C", str(dest)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{(lab, variant?): build folder}, each built once per module."""
    cache = {}

    def get(lab, variant=False):
        key = (lab, variant)
        if key not in cache:
            spec = yaml.safe_load((REPO / "labs" / lab / "lab.yaml").read_text())
            names = variants.draw(lab, spec, COURSE_SEED) if variant else None
            cache[key] = (build(lab, tmp_path_factory.mktemp("%s-%s" % (lab, "variant" if variant else "own")) / "w",
                                names), names or {})
        return cache[key]
    return get


def lab_argv(lab, binary, truth_log, tmp_path, names=None):
    """The graded program's command line as the agent makes it: the lab's drawn arguments (its fresh file made
    here, as the agent makes it under /run/bpfhol-lab/), then the contract's own."""
    spec = load_lab(lab, variant=names or None)
    spec.window = WINDOW
    run = spec.workload_run(random.Random(7))
    args = dict(run["args"])
    for key, value in args.items():
        if run["create_file"] and value == run["create_file"]:
            args[key] = str(tmp_path / os.path.basename(value))
            Path(args[key]).write_text("bpfhol lab data\n")
    argv = [str(binary)]
    for key, value in sorted(args.items()):
        argv += ["--" + key, str(value)]
    return argv + ["--truth-log", str(truth_log), "--hold", "--notify-fd", "1"], spec


def start(argv):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def notice(proc, timeout):
    """One notice byte on stdout within ``timeout`` s, else None."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return os.read(proc.stdout.fileno(), 1) if ready else None


def records(path):
    lines = path.read_text().splitlines()
    out = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) and isinstance(r.get("event"), str) for r in out), lines[:5]
    return out


def finish(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the workload did not end within 10 s of %s" % signal.Signals(sig).name)
    rest = proc.stdout.read()
    return proc.returncode, rest, proc.stderr.read().decode(errors="replace")


@pytest.mark.parametrize("lab", LABS)
def test_the_workload_builds_every_program_its_menu_runs(lab, built):
    folder, _ = built(lab)
    manifest = read_manifest(REPO / "labs" / lab)
    graded = load_lab(lab).workload["program"]
    for program in {graded} | {entry["program"] for entry in manifest["menu"]}:
        binary = folder / program
        assert binary.is_file() and os.access(binary, os.X_OK), "make built no %s in labs/%s/workload" % (program, lab)


@pytest.mark.parametrize("lab", LABS)
def test_a_held_run_keeps_the_contract(lab, built, tmp_path):
    folder, _ = built(lab)
    truth_log = tmp_path / "truth.jsonl"
    argv, spec = lab_argv(lab, folder / spec_program(lab), truth_log, tmp_path)
    proc = start(argv)
    try:
        assert notice(proc, 10) == b".", "no start-up notice on --notify-fd within 10 s"
        # held: alive, named as the lab's scripts filter it (comm), its truth log made private and still empty
        assert proc.poll() is None
        assert Path("/proc/%d/comm" % proc.pid).read_text().strip() == spec.workload_comm
        mode = stat.S_IMODE(truth_log.stat().st_mode)
        assert mode == 0o600 and truth_log.stat().st_size == 0, (oct(mode), truth_log.stat().st_size)
        assert notice(proc, 0.5) is None, "the loop ended without SIGUSR1 under --hold"
        released = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        assert notice(proc, WINDOW + 5) == b".", "no loop-done notice within --duration-s + 5 s"
        took = time.monotonic() - released
        assert took <= WINDOW + 1.5, "the loop ran %.1f s past --duration-s %d" % (took, WINDOW)
        # lingering (--linger-s): still alive, and nothing of the truth written while scripts may trace
        time.sleep(0.2)
        assert proc.poll() is None and truth_log.stat().st_size == 0
    finally:
        code, rest, err = finish(proc)
    assert code == 0 and rest == b"" and err == "", (code, rest[:200], err[-500:])
    events = records(truth_log)
    names = [r["event"] for r in events]
    assert names[:2] == ["start", "released"] and names[-2:] == ["done", "exit"], names
    assert events[0].get("pid") == proc.pid
    required = spec.truth_spec.get("required_event")
    assert required and required in names[2:-2], "no %r record in the loop (lab.yaml truth.required_event)" % required
    for name, expr in spec.truth_spec["summary"].items():
        if expr.startswith("start."):
            assert expr[len("start."):] in events[0], "truth.summary.%s: the start record has no %s" % (name, expr)


@pytest.mark.parametrize("lab", LABS)
def test_a_run_never_released_ends_cleanly_with_no_loop(lab, built, tmp_path):
    folder, _ = built(lab)
    truth_log = tmp_path / "truth.jsonl"
    argv, spec = lab_argv(lab, folder / spec_program(lab), truth_log, tmp_path)
    proc = start(argv)
    try:
        assert notice(proc, 10) == b"."
    finally:
        code, rest, err = finish(proc, signal.SIGINT)
    assert code == 0 and rest == b"" and err == "", (code, rest[:200], err[-500:])
    names = [r["event"] for r in records(truth_log)]
    assert names[0] == "start" and names[-1] == "exit", names
    assert "released" not in names and spec.truth_spec["required_event"] not in names, names


@pytest.mark.parametrize("lab", LABS)
def test_bad_usage_is_one_line_and_exit_2(lab, built, tmp_path):
    folder, _ = built(lab)
    proc = subprocess.run([str(folder / spec_program(lab)), "--no-such-option", "1"], capture_output=True,
                          text=True, timeout=10)
    assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize("lab", LABS)
def test_variant_h_renames_the_program_and_its_records(lab, built, tmp_path):
    spec_data = yaml.safe_load((REPO / "labs" / lab / "lab.yaml").read_text())
    if not spec_data.get("variants"):
        pytest.skip("labs/%s lists no variants" % lab)
    folder, names = built(lab, variant=True)
    program = names.get(spec_program(lab), spec_program(lab))
    truth_log = tmp_path / "truth.jsonl"
    # make builds the program under the lab's own file name; roles/workloads installs it under the drawn one
    argv, spec = lab_argv(lab, folder / spec_program(lab), truth_log, tmp_path, names)
    proc = start(argv)
    try:
        assert notice(proc, 10) == b"."
        assert Path("/proc/%d/comm" % proc.pid).read_text().strip() == program[:15]
        proc.send_signal(signal.SIGUSR1)
        assert notice(proc, WINDOW + 5) == b"."
    finally:
        code, _, err = finish(proc)
    assert code == 0, err
    text = truth_log.read_text()
    left = [c for c in names if re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(c), text)]
    assert not left, "the truth log still says the lab's own names %s under a variant" % left
    assert spec.truth_spec["required_event"] in {r["event"] for r in records(truth_log)}


def spec_program(lab):
    return str(yaml.safe_load((REPO / "labs" / lab / "lab.yaml").read_text())["workload"]["program"])
