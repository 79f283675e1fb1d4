"""The Gradescope autograder bundle end to end, with Gradescope's /autograder layout recreated in a temporary root:
make-bundle builds the zip from a VM roster (keys pinned by preflight), the zip is unpacked into source/ and its
wheel installed into a venv as setup.sh does, and run_autograder grades submission/q*.bt on real sshd "lab VMs"
with real bpftrace.  Passing and failing submissions give a valid results.json; an unreachable pool is an
autograder error (no results.json, non-zero exit), never a zero."""

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "tests" / "fixtures" / "labs" / "tracepoints" / "solutions"


def run(cmd, cwd, env=None, timeout=600):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def autograder(tmp_path, farm, lab_prefix, test_lab):
    return make_autograder(tmp_path, farm, lab_prefix, test_lab)


def make_autograder(tmp_path, farm, lab_prefix, lab):
    """The bundle for LAB (a lab folder, or the name of a lab the wheel carries), unpacked as Gradescope would."""
    vm = farm.add()
    vms = tmp_path / "vms.yml"
    vms.write_text(yaml.safe_dump({"students": [{"student": "vm1", "host": "127.0.0.1", "port": vm.port,
                                                 "user": "root", "key": vm.key, "agent": lab_prefix["agent"]}]}))
    refused = run([sys.executable, REPO / "gradescope" / "make-bundle", vms, "--lab", lab, "-o", tmp_path / "ag.zip"], REPO)
    assert refused.returncode != 0 and "preflight" in refused.stderr      # no pinned key yet: refuses
    run([sys.executable, "-m", "grader", "preflight", vms], REPO)          # pins the VM's key
    made = run([sys.executable, REPO / "gradescope" / "make-bundle", vms, "--lab", lab, "-o", tmp_path / "ag.zip"], REPO)
    assert made.returncode == 0, made.stderr
    root = tmp_path / "autograder"
    with zipfile.ZipFile(tmp_path / "ag.zip") as z:
        names = z.namelist()
        z.extractall(root / "source")
    assert {"setup.sh", "run_autograder", "config.yml", "vms.yml", "known_hosts", "keys/vm1"} <= set(names)
    assert ("lab/lab.yaml" in names) == Path(lab).is_dir()       # a named lab travels in the wheel instead
    for name in ("run_autograder", "setup.sh"):
        (root / "source" / name).chmod(0o755)
    (root / "source" / "keys" / "vm1").chmod(0o600)
    # What setup.sh does, minus apt-get: a venv with the bundled wheel (dependencies from this environment).
    assert run([sys.executable, "-m", "venv", root / "venv"], tmp_path).returncode == 0
    [wheel] = (root / "source").glob("bpfhol-*.whl")
    got = run([root / "venv" / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path)
    assert got.returncode == 0, got.stderr
    purelib = run([root / "venv" / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  tmp_path).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p, "paramiko").is_dir()]
    Path(purelib, "deps.pth").write_text("\n".join(deps) + "\n")
    # Gradescope copies run_autograder to /autograder/run_autograder
    (root / "run_autograder").write_bytes((root / "source" / "run_autograder").read_bytes())
    (root / "run_autograder").chmod(0o755)
    return {"root": root, "vm": vm}


def submit(root, scripts):
    sub = root / "submission"
    if sub.exists():
        for p in sorted(sub.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
    (sub / "answers").mkdir(parents=True)             # a student who zipped a folder
    for name, text in scripts.items():
        (sub / "answers" / name).write_text(text)
    results = root / "results"
    results.mkdir(exist_ok=True)
    (results / "results.json").unlink(missing_ok=True)
    env = dict(os.environ, BPFHOL_AUTOGRADER_ROOT=str(root), PYTHONPATH="")
    proc = run([root / "run_autograder"], cwd=root, env=env)
    doc = json.loads((results / "results.json").read_text()) if (results / "results.json").exists() else None
    return proc, doc


def valid_results_json(doc):
    assert isinstance(doc["score"], (int, float)) and isinstance(doc["tests"], list) and doc["tests"]
    for t in doc["tests"]:
        assert {"name", "score", "max_score", "status", "output"} <= set(t) and t["status"] in ("passed", "failed")
        assert t["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
    return {t["name"].split(":")[0]: t for t in doc["tests"]}


def test_bundle_grades_passing_failing_and_reports_a_dead_pool(autograder):
    root = autograder["root"]
    reference = {p.name: p.read_text() for p in SOLUTIONS.glob("q*.bt")}

    proc, doc = submit(root, dict(reference, **{"notes.txt": "not a script"}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = valid_results_json(doc)
    assert tests["q1"]["status"] == tests["q2"]["status"] == "passed", tests
    assert doc["score"] >= tests["q1"]["max_score"] + tests["q2"]["max_score"]

    broken = dict(reference, **{"q1.bt": 'tracepoint:syscalls:sys_enter_openat { printf("%s\\n", str(args->filename) }\n'})
    del broken["q3.bt"]
    proc, doc = submit(root, broken)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = valid_results_json(doc)
    assert tests["q1"]["status"] == "failed" and "did not compile" in tests["q1"]["output"]
    assert tests["q3"]["status"] == "failed" and tests["q2"]["status"] == "passed"
    assert doc["score"] == tests["q2"]["score"]

    autograder["vm"].stop()                            # the whole pool is down
    try:
        proc, doc = submit(root, reference)
    finally:
        autograder["vm"].start()
    assert proc.returncode == 2 and doc is None          # an autograder error, not a score of 0
    assert "autograder error" in proc.stdout and "Rerun autograder" in proc.stdout, proc.stdout


def test_bundle_targets_the_uprobes_lab_by_name(tmp_path, farm, lab_prefix):
    """`make-bundle --lab uprobes`: the lab comes from the wheel, and the autograder grades u*.bt against
    uprobeme's run: the references get full marks, an answer with the other field gets none for it."""
    root = make_autograder(tmp_path, farm, lab_prefix, "uprobes")["root"]
    solutions = REPO / "labs" / "uprobes" / "solutions"
    binary = "%s/bin/uprobeme" % lab_prefix["root"]
    reference = {p.name: p.read_text().replace("/opt/bpfhol/bin/uprobeme", binary) for p in solutions.glob("u*.bt")}
    assert sorted(reference) == ["u1.bt", "u2.bt", "u3.bt", "u4.bt"]

    proc, doc = submit(root, reference)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lab uprobes" in proc.stdout
    tests = valid_results_json(doc)
    assert all(t["status"] == "passed" for t in tests.values()), tests
    assert doc["score"] == sum(t["max_score"] for t in tests.values()) == 13

    other_field = dict(reference, **{"u1.bt": 'uretprobe:%s:process_order { printf("%%d\\n", retval); }\n' % binary})
    proc, doc = submit(root, other_field)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = valid_results_json(doc)
    assert tests["u1"]["status"] == "failed" and tests["u2"]["status"] == "passed", tests
    assert doc["score"] == 13 - tests["u1"]["max_score"]
