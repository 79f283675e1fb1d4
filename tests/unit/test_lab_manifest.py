"""lab.yaml as the one manifest (grader/labmanifest.py, grader/labspec.py): the menu, host packages and probe kind
every layer reads; the workload's knobs as declarative draws; preflight's verdict from a proof job.  Under 2 s."""

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grader.errors import GraderError
from grader.labmanifest import ManifestError, labs_manifest, manifest_of
from grader.labspec import load_lab

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "grader" / "labmanifest.py"


def test_the_labs_declare_what_their_vms_run_and_need():
    out = subprocess.run([sys.executable, str(SCRIPT), str(REPO / "labs"), "kprobes", "uprobes"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["host_probes"] == ["kprobe", "uprobe"] and doc["host_packages"] == []
    assert doc["labs"]["uprobes"]["menu"][0]["program"] == "uprobeme"
    assert doc["labs"]["kprobes"]["title"] == yaml.safe_load((REPO / "labs/kprobes/lab.yaml").read_text())["title"]
    # the roles' manifest and the grader's Lab agree
    for name in ("kprobes", "uprobes"):
        lab = load_lab(name)
        assert lab.host_probe == doc["labs"][name]["host_probe"] and lab.menu == doc["labs"][name]["menu"]
    # a lab of only uprobes: nothing asks the host for kprobes (roles/bpftrace skips its kprobe proof)
    assert labs_manifest(REPO / "labs", ["uprobes"])["host_probes"] == ["uprobe"]


def test_a_lab_not_there_is_one_line_naming_the_labs_that_are(tmp_path):
    # lab-agnostic (issue 31 item 6): a name no lab has, and the labs that are, whatever they are
    out = subprocess.run([sys.executable, str(SCRIPT), str(REPO / "labs"), "nosuchlab"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2 and out.stdout == "" and len(out.stderr.splitlines()) == 1, out.stderr
    present = sorted(p.name for p in (REPO / "labs").iterdir() if (p / "lab.yaml").is_file())
    assert "'nosuchlab'" in out.stderr and ", ".join(present) in out.stderr


def test_defaults_a_lab_may_leave_out():
    manifest = manifest_of({"name": "x", "workload": {"program": "xme"}})
    assert manifest["menu"] == [{"program": "xme", "args": [], "description": ""}]
    assert manifest["host_probe"] == "kprobe" and manifest["host_packages"] == [] and manifest["checks_module"] == ""


@pytest.mark.parametrize("fields,msg", [
    ({"host_probe": "fentry"}, "host_probe must be one of kprobe, uprobe, tracepoint"),
    ({"host_packages": "systemtap-sdt-dev"}, "host_packages must list Debian package names"),
    ({"host_packages": ["bad name; rm"]}, "host_packages must list"),
    ({"menu": {"program": "xme"}}, "menu must list"),
    ({"menu": [{"program": "x me"}]}, r"menu\[0\] must be"),
    ({"menu": [{"program": "xme", "args": ["--a", "b c"]}]}, r"menu\[0\].args must list plain words"),
    ({"menu": [{"program": "xme"}, {"program": "xme"}]}, "names a program twice"),
    ({"checks_module": "../other/checks.py"}, "checks_module must be a file or folder name"),
])
def test_a_wrong_manifest_field_is_one_line(fields, msg):
    with pytest.raises(ManifestError, match=msg):
        manifest_of(dict({"name": "x", "workload": {"program": "xme"}}, **fields), "lab.yaml")


def _lab_with(tmp_path, workload):
    lab = tmp_path / "mylab"
    shutil.copytree(REPO / "labs" / "uprobes", lab, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((lab / "lab.yaml").read_text())
    spec["workload"] = workload
    (lab / "lab.yaml").write_text(yaml.safe_dump(spec))
    return lab


@pytest.mark.parametrize("workload,msg", [
    ({"program": "kprobeme", "file": "random", "args": {}}, "workload.file is not a workload setting"),
    ({"program": "kprobeme", "fd_offset": {"range": [0, 3]}}, "workload.fd_offset is not a workload setting"),
    ({"program": "kprobeme", "args": {"truth-log": "/tmp/x"}}, "set by the grader for every run"),
    ({"program": "kprobeme", "args": {"count": {"range": [5]}}}, "range must be"),
    ({"program": "kprobeme", "args": {"count": {"range": [1, 5], "choice": [1]}}}, "must be one draw"),
    ({"program": "kprobeme", "args": {"count": {"range": [1, 5], "not_multiple_of": "nope"}}},
     "not_multiple_of must name another numeric argument"),
    ({"program": "kprobeme", "args": {"interval-ms": {"window_ms_over": "count"}}}, "window_ms_over must name"),
    ({"program": "kprobeme", "args": {"file": {"fresh_file": ["../x"]}}}, "fresh_file must list file name stems"),
    ({"program": "kprobeme", "args": {"file": "a b"}}, "must be a plain word or number"),
])
def test_a_wrong_workload_draw_is_one_line(tmp_path, workload, msg):
    with pytest.raises(GraderError, match=msg):
        load_lab(str(_lab_with(tmp_path, workload)))


def test_draws_follow_the_declaration(tmp_path):
    lab = load_lab(str(_lab_with(tmp_path, {"program": "uprobeme", "args": {
        "every": {"choice": [2, 3]}, "count": {"range": [10, 40], "not_multiple_of": "every"},
        "where": {"fresh_file": ["notes"]}, "interval-ms": {"window_ms_over": "count"}, "mode": "fast"}})))
    runs = [lab.workload_run(random.Random(seed)) for seed in range(200)]
    for run in runs:
        args = run["args"]
        assert args["count"] % args["every"] != 0 and 10 <= args["count"] <= 41
        assert args["interval-ms"] == int(lab.window * 1000 // args["count"]) and args["duration-s"] == lab.window
        assert args["where"] == run["create_file"] and run["decoy_file"] is None and args["mode"] == "fast"
    assert len({r["args"]["where"] for r in runs}) == 200


class ProofBackend:
    """A host answering preflight's proof job with a canned reply."""
    name = "fake"

    def __init__(self, attached=True, released=True):
        self.attached, self.released, self.jobs = attached, released, []

    def connect(self):
        pass

    def close(self):
        pass

    def agent_facts(self):
        from grader.agent import AGENT_VERSION
        return {"agent_version": AGENT_VERSION, "bpftrace": "0.17.0", "btf": True, "tracefs": True,
                "kprobe_attach": False, "kprobe_error": "ERROR: Error attaching probe: 'kprobe:vfs_read'"}

    def run_agent_job(self, job, uploads, timeout):
        self.jobs.append((job, uploads))
        truth = ['{"event": "start", "pid": 7}'] + (['{"event": "released"}'] if self.released else [])
        return {"ok": True, "scripts": [{"name": "preflight", "status": "ran", "attached": self.attached,
                                         "exit_code": 0 if self.attached else 255,
                                         "stderr": "" if self.attached else "ERROR: uprobe target not found"}],
                "workload": {"truth": truth + ['{"event": "exit"}']}}


@pytest.mark.parametrize("attached,released,problem", [
    (True, True, None),
    (False, True, "uprobes do not attach: ERROR: uprobe target not found"),
    (True, False, "was not released"),
])
def test_preflight_for_a_uprobe_lab_judges_its_proof_job(attached, released, problem):
    from grader.preflight import check_host
    from grader.roster import Entry

    backend = ProofBackend(attached, released)
    row = check_host(Entry(student="s", host="h", port=22), lambda e: backend, load_lab("uprobes"))
    assert row["probe"] == "uprobe" and row["ok"] == (problem is None), row
    if problem:
        assert any(problem in p for p in row["problems"]), row["problems"]
    [(job, uploads)] = backend.jobs
    assert job["workload"]["program"] == "uprobeme" and job["window"] == 2 and not job["stop_menu_workloads"]
    assert list(uploads) == ["preflight.bt"] and uploads["preflight.bt"].startswith(b"uprobe:")
    # the default still proves a kprobe, from the facts, with no job
    default = ProofBackend()
    row = check_host(Entry(student="s", host="h", port=22), lambda e: default)
    assert not row["ok"] and row["probe"] == "kprobe" and not default.jobs
    assert any("kprobes do not attach" in p for p in row["problems"]), row["problems"]


def test_the_menu_unit_runs_the_program_with_the_manifests_arguments():
    """roles/workloads/templates/workload.service.j2 with a menu entry of lab.yaml (plain Jinja2: the template uses
    no Ansible filter)."""
    import jinja2

    template = jinja2.Template((REPO / "roles/workloads/templates/workload.service.j2").read_text())
    entry = manifest_of({"name": "x", "workload": {"program": "xme"},
                         "menu": [{"program": "xme", "args": ["--interval-ms", "500", "--leak-every=3"]}]})["menu"][0]
    unit = template.render(ansible_managed="managed", workloads_program="cfgpoller", workloads_lab="x",
                           workloads_prefix="/opt/bpfhol", item=entry, workloads_nofile_limit=65536)
    assert "\nExecStart=/opt/bpfhol/bin/cfgpoller --interval-ms 500 --leak-every=3\n" in unit, unit
    bare = template.render(ansible_managed="managed", workloads_program="xme", workloads_lab="x",
                           workloads_prefix="/opt/bpfhol", item=dict(entry, args=[]), workloads_nofile_limit=1)
    assert "\nExecStart=/opt/bpfhol/bin/xme\n" in bare, bare
