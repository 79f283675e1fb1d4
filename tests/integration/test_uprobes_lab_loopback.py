"""The uprobes lab graded for real on this host (its kernel has uprobes, not kprobes): real sshd on loopback,
the real agent, real uprobeme and bpftrace, the grader's CLI.  The reference answers get full marks, and
answers that do not watch the run (last run's numbers, the other field, the wrong probe) get none."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from expected_verdicts import EXPECTED_UPROBES
from sshd_hosts import answers_folder

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "labs" / "uprobes"
CASES = REPO / "tests" / "fixtures" / "scripts" / "uprobes"
# What each example of the text prints when it works (a regex per line of proof; tests/vm/test_grading_vm.py
# checks the same in the lab VM): 01 the text parse_field was given, 02 the number it returned for it, 03 a
# histogram of the jobs' times, 04 the stack into nanosleep with a frame of uprobeme's own.
EXAMPLE_SHOWS = {"01": [r'uprobeme pid \d+: parse_field\("\d+"\), the text at 0x[0-9a-f]+'],
                 "02": [r'parse_field\("(\d+)"\) returned \1\b'],
                 "03": [r"@job_ns:", r"\[\d+\w?, \d+\w?\)\s+\d+ \|"],
                 "04": [r"nanosleep\+0", r"\b(main|fetch_quote|sleep_ns)\+\d+"]}


def scripts_for(prefix, overrides=None):
    """The lab's reference answers, pointed at this host's install tree instead of /opt/bpfhol."""
    out = {p.name: p.read_text().replace("/opt/bpfhol/", str(prefix) + "/") for p in (LAB / "solutions").glob("u*.bt")}
    out.update(overrides or {})
    return out


def case_scripts(case, prefix):
    """A case of tests/fixtures/scripts/uprobes/ (shared with the VM test), pointed at this host's install tree."""
    return {p.name: p.read_text().replace("/opt/bpfhol/", str(prefix) + "/") for p in (CASES / case).glob("u*.bt")}


def test_uprobes_references_full_marks_and_guesses_none(tmp_path, farm, lab_prefix):
    prefix = lab_prefix["root"]
    wrong = case_scripts("wrong", prefix)
    host_a, host_b = farm.add(), farm.add()
    rows = [{"student": "uma", "host": "127.0.0.1", "port": host_a.port, "user": "root", "key": host_a.key,
             "agent": lab_prefix["agent"], "answers": answers_folder(tmp_path, "uma", scripts_for(prefix))},
            {"student": "vic", "host": "127.0.0.1", "port": host_b.port, "user": "root", "key": host_b.key,
             "agent": lab_prefix["agent"], "answers": answers_folder(tmp_path, "vic", wrong)}]
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": rows}))
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(roster), "--lab", "uprobes", "--results",
                           str(results), "--parallel", "1", "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    by = {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}
    uma, vic = by["uma"], by["vic"]
    assert uma["status"] == "graded" and uma["score"] == uma["max_score"] == 13, \
        [(e["id"], e["reason"], e["feedback"]) for e in uma["exercises"]]
    assert uma["lab"] == "uprobes" and uma["workload"]["orders"] >= 24 and uma["workload"]["released"]
    reasons = {e["id"]: e["reason"] for e in vic["exercises"]}
    assert vic["score"] == 0, reasons
    assert all(reasons[ex] in allowed for ex, allowed in EXPECTED_UPROBES["wrong"].items()), reasons
    # The evidence names the run's truth for an audit: uprobeme's own records.
    [path] = results.glob("students/*/%s" % Path(uma["evidence"]).name)
    evidence = json.loads(path.read_text())
    assert evidence["lab"]["name"] == "uprobes"
    assert any('"event": "strtol"' in line for line in evidence["reply"]["workload"]["truth"])
    # And a re-judge from that evidence alone changes nothing.
    again = subprocess.run([sys.executable, "-m", "grader", "report", "--results", str(results), "--rejudge"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 verdicts changed" in again.stderr, again.stderr


def test_uprobes_cheats_fail_and_variants_pass(tmp_path, farm, lab_prefix):
    """Submissions mode on one host (graded one after another: uprobes see every process of the binary), the
    shared fixture cases: constants printed beside counting probes fail with the reasons expected_verdicts.py
    names; correct answers written differently (multi-key maps, nanoseconds keyed by comm, maps keyed by the
    value holding other values, decimal ms per line) pass."""
    prefix = lab_prefix["root"]
    subs = tmp_path / "SUBMISSIONS"
    for case in ("cheat", "variants", "variants_b"):
        (subs / case).mkdir(parents=True)
        for name, text in case_scripts(case, prefix).items():
            (subs / case / name).write_text(text)
    host = farm.add()
    roster = tmp_path / "vms.yml"
    roster.write_text(yaml.safe_dump({"students": [{"student": "vm1", "host": "127.0.0.1", "port": host.port,
                                                    "user": "root", "key": host.key, "agent": lab_prefix["agent"]}]}))
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "grader", "submissions", str(subs), "--vms", str(roster), "--lab",
                           "uprobes", "--results", str(results), "--quiet"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    journal = {r["student"]: r for r in map(json.loads, (results / "journal.jsonl").read_text().splitlines())}
    wrong = [(case, e["id"], e["reason"], e["feedback"][:200]) for case in ("cheat", "variants", "variants_b")
             for e in journal[case]["exercises"] if e["reason"] not in EXPECTED_UPROBES[case][e["id"]]]
    assert not wrong, wrong
    assert journal["variants"]["score"] == journal["variants_b"]["score"] == 13 and journal["cheat"]["score"] == 0



EXIT_LINE = re.compile(r"(?m)^interval:s:\d+ \{ exit\(\); \}\n")


def example_as_answer(name, prefix):
    """An example of the text as a student might hand it in: its self-ending `interval:s:N { exit(); }` line
    removed (the grader ends every script with Ctrl-C after its window), pointed at this host's install tree."""
    source = (LAB / "examples" / name).read_text()
    answer, removed = EXIT_LINE.subn("", source)
    assert removed == 1, "%s: expected one interval:s:N { exit(); } line" % name
    return answer.replace("/opt/bpfhol/", str(prefix) + "/")


def test_no_example_of_the_text_passes_any_question(tmp_path, farm, lab_prefix):
    """The student edition holds the text's examples: none may earn a point.  One real grading run on a loopback
    host with the four examples (exit() removed) handed in as the four answers; then each example's output, run
    for the whole window beside the real uprobeme, is judged against every question by the lab's checks, as a
    re-judge would from the evidence.  Each example must have attached and shown what its section says, or the
    verdicts prove nothing."""
    from grader import bpftrace_output, grading
    from grader.labspec import load_lab

    lab = load_lab("uprobes")
    prefix = lab_prefix["root"]
    examples = sorted(p.name for p in (LAB / "examples").glob("*.bt"))
    assert len(examples) <= len(lab.exercises), "grade the examples in more than one run"
    answers = {ex.script: example_as_answer(name, prefix) for ex, name in zip(lab.exercises, examples)}
    host = farm.add()
    roster = tmp_path / "roster.yml"
    roster.write_text(yaml.safe_dump({"students": [
        {"student": "examples", "host": "127.0.0.1", "port": host.port, "user": "root", "key": host.key,
         "agent": lab_prefix["agent"], "answers": answers_folder(tmp_path, "examples", answers)}]}))
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "grader", "grade", str(roster), "--lab", "uprobes", "--results",
                           str(results), "--parallel", "1", "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [row] = map(json.loads, (results / "journal.jsonl").read_text().splitlines())
    assert row["status"] == "graded" and row["score"] == 0, [(e["id"], e["reason"]) for e in row["exercises"]]
    [path] = results.glob("students/*/%s" % Path(row["evidence"]).name)
    reply = json.loads(path.read_text())["reply"]
    items = {item["name"]: item for item in reply["scripts"]}
    orders = row["workload"]["orders"]
    shows = {"01": lambda out: any('parse_field("' in line for line in out.lines),
             "02": lambda out: any(re.search(r'parse_field\("(\d+)"\) returned \1\b', line) for line in out.lines),
             "03": lambda out: sum(c for _, _, c in out.hist_buckets().get("@job_ns", [])) == orders,
             "04": lambda out: any("nanosleep" in (key or "") for _, key, _ in out.map_items())}
    passed = []
    for ex, name in zip(lab.exercises, examples):
        item = items[ex.id]
        out = bpftrace_output.parse(item.get("stdout", ""))
        assert item.get("attached") and shows[name[:2]](out), (name, item.get("stderr", "")[-1000:],
                                                               out.excerpt(12))
        as_every_answer = dict(reply, scripts=[dict(item, name=other.id) for other in lab.exercises])
        result = grading.evaluate(lab, name, as_every_answer)
        for verdict in result.exercises:
            # judged by the check itself, not stopped earlier (a compile error would prove nothing)
            assert verdict.reason not in ("missing", "compile_error", "not_attached", "attach_failed",
                                          "attach_timeout", "wrong_probe_type", "flooded", "stop_timeout"), \
                (name, verdict.id, verdict.reason, verdict.feedback)
            if verdict.passed:
                passed.append((name, verdict.id, verdict.feedback))
    assert not passed, passed


@pytest.mark.parametrize("example", sorted(p.name for p in (LAB / "examples").glob("*.bt")))
def test_every_example_of_the_text_runs_and_ends_itself(tmp_path, lab_prefix, example):
    """The text's examples, against a running uprobeme (the menu's copy runs it without arguments), with the
    real bpftrace; each ends itself (interval probe) and prints what its section says."""
    binary = "%s/bin/uprobeme" % lab_prefix["root"]
    script = tmp_path / example
    script.write_text((LAB / "examples" / example).read_text().replace("/opt/bpfhol/bin/uprobeme", binary))
    workload = subprocess.Popen([binary, "--interval-ms", "50"])
    try:
        proc = subprocess.run(["bpftrace", str(script)], capture_output=True, text=True, timeout=120)
    finally:
        workload.terminate()
        workload.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr
    for expect in EXAMPLE_SHOWS[example[:2]]:
        assert re.search(expect, proc.stdout), (expect, proc.stdout[-2000:])


def test_a_stalled_fast_call_does_not_fail_the_reference_histogram(tmp_path, lab_prefix):
    """CI once failed the u3 reference on a loaded emulated guest: a fast fetch_quote() call stalled by the
    scheduler for several ms made the old rule (fast calls measure at most twice their time) refuse the slow
    calls' bucket.  Here real uprobeme runs back to back under real bpftrace with the reference u3.bt while
    it is stopped (SIGSTOP) for 5-20 ms again and again, so fast calls stall for real; the check must still
    accept the reference, and the run must hold such a stall (or the test proves nothing)."""
    import os
    import random
    import signal
    import time

    from grader import bpftrace_output
    from grader.labspec import load_lab
    from grader.truth import parse_truth

    prefix = lab_prefix["root"]
    script = tmp_path / "u3.bt"
    script.write_text(scripts_for(prefix)["u3.bt"])
    log = tmp_path / "truth.jsonl"
    # its second notice byte on stdout says the loop is over (the log itself is written only at exit)
    work = subprocess.Popen([str(prefix / "bin" / "uprobeme"), "--truth-log", str(log), "--hold", "--count", "120",
                             "--interval-ms", "0", "--slow-calls", "6", "--seed", "424242", "--linger-s", "60",
                             "--notify-fd", "1"], stdout=subprocess.PIPE)
    os.set_blocking(work.stdout.fileno(), False)
    notices = b""
    tracer = subprocess.Popen(["bpftrace", "-f", "json", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:          # attached: bpftrace holds uprobe perf events of the file
            fds = Path("/proc/%d/fd" % tracer.pid)
            if sum(1 for fd in fds.iterdir() if "perf_event" in str(fd.resolve())) >= 2:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        work.send_signal(signal.SIGUSR1)
        rng = random.Random(7)
        while len(notices) < 2:
            assert time.monotonic() < deadline, "uprobeme did not finish"
            notices += work.stdout.read() or b""
            time.sleep(rng.uniform(0.002, 0.010))
            work.send_signal(signal.SIGSTOP)
            time.sleep(rng.uniform(0.005, 0.020))
            work.send_signal(signal.SIGCONT)
        tracer.send_signal(signal.SIGINT)
        out, err = tracer.communicate(timeout=60)
        work.terminate()                            # it writes its log as it ends
        work.wait(timeout=10)
    finally:
        for proc in (tracer, work):
            proc.kill()
            proc.wait()
    truth = parse_truth(log.read_text().splitlines())
    truth.comm = "uprobeme"
    quotes = truth.of("quote")
    assert len(quotes) == 120 and all("delay_ns" in q for q in quotes), err
    stalled = [q for q in quotes if not q["slow"] and q["ns"] > 5_000_000]
    assert stalled, "no fast call stalled beyond 5 ms: the test proved nothing"
    lab = load_lab("uprobes")
    [ex] = [e for e in lab.exercises if e.id == "u3"]
    verdict = lab.checks[ex.check](bpftrace_output.parse(out), truth, ex.params)
    assert verdict.passed, (verdict.reason, verdict.detail, len(stalled), out[-2000:])


def text_bpftrace_lines(option):
    """The `sudo bpftrace OPTION ...` lines of the uprobes text's ```sh blocks, as a student types them."""
    text = (LAB / "README.md").read_text()
    return [line.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()
            if line.strip().startswith("sudo bpftrace %s " % option)]


def test_before_you_probe_commands_of_the_text_run(lab_prefix):
    """Section 2's "Before you probe" on this host's bpftrace, pointed at its install tree: every `-lv` line lists
    parse_field's parameter by name (the text quotes 0.17's `const char* text`: this host runs 0.17), and every
    `-e` line ends itself and, with a real uprobeme calling parse_field meanwhile, prints a count per second that
    saw the calls."""
    import shlex
    import time

    prefix = lab_prefix["root"]
    version = subprocess.run(["bpftrace", "--version"], capture_output=True, text=True).stdout
    listing, one_liners = text_bpftrace_lines("-lv"), text_bpftrace_lines("-e")
    assert listing and one_liners, "the uprobes text lost its Before you probe commands"
    text = (LAB / "README.md").read_text()
    for line in listing:
        argv = shlex.split(line.replace("/opt/bpfhol/", str(prefix) + "/"))[1:]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout
        assert re.search(r"^\s+const char\s?\* text$", out, re.M), (line, out)
        if "v0.17." in version:
            assert "`const char* text`" in text and "    const char* text" in out, out
    for line in one_liners:
        argv = shlex.split(line.replace("/opt/bpfhol/", str(prefix) + "/"))[1:]
        work = subprocess.Popen([str(prefix / "bin" / "uprobeme"), "--count", "60", "--interval-ms", "100",
                                 "--seed", "7"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            started = time.monotonic()
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            took = time.monotonic() - started
        finally:
            work.kill()
            work.wait()
        counts = [int(n) for n in re.findall(r"^@calls: (\d+)$", proc.stdout, re.M)]
        assert proc.returncode == 0 and took < 60, (line, proc.returncode, took, proc.stderr[-500:])
        assert len(counts) >= 3 and max(counts) > 0, (line, proc.stdout)
