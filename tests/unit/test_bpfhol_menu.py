"""The student's `bpfhol` menu, run for real against a fake systemctl on PATH.

The fake keeps unit states in a directory and logs every call, so the tests see
exactly which systemctl commands the menu issues.  The real systemd path is
covered by tests/vm/test_lab.py.
"""

import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BPFHOL = REPO / "roles" / "bpfhol_menu" / "files" / "bpfhol"

FAKE_SYSTEMCTL = r"""#!/bin/sh
# fake systemctl: state files in $FAKE_STATE, call log in $FAKE_STATE/calls
echo "$*" >> "$FAKE_STATE/calls"
action=$1; shift
case "$action" in
  start)
    for u in "$@"; do
      case "$u" in *broken*) echo "Job for $u failed." >&2; exit 1;; esac
      case "$u" in *crashy*) echo failed > "$FAKE_STATE/$u";; *) echo active > "$FAKE_STATE/$u";; esac
    done ;;
  stop)
    for u in "$@"; do echo inactive > "$FAKE_STATE/$u"; done ;;
  show)
    for a in "$@"; do u=$a; done
    st=inactive; [ -f "$FAKE_STATE/$u" ] && st=$(cat "$FAKE_STATE/$u")
    echo "ActiveState=$st"
    if [ "$st" = active ]; then echo "SubState=running"; echo "MainPID=4242";
    else echo "SubState=dead"; echo "MainPID=0"; fi ;;
  *) echo "fake systemctl: unsupported $action" >&2; exit 1 ;;
esac
"""

REGISTRY = {
    "version": 1,
    "labs": [
        {"name": "kprobes", "title": "Linux kprobes with bpftrace",
         "text": "~/lab/kprobes.md",
         "workloads": [{"name": "kprobeme", "unit": "bpfhol-kprobeme.service"}]},
        {"name": "other", "title": "A second lab",
         "workloads": [{"name": "crashy"}]},
    ],
}


@pytest.fixture
def env(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    reg = tmp_path / "labs.json"
    reg.write_text(json.dumps(REGISTRY))
    e = dict(os.environ)
    e.update(PATH=f"{bindir}:{e['PATH']}", FAKE_STATE=str(state), BPFHOL_REGISTRY=str(reg),
             BPFHOL_LIB=str(tmp_path / "lib"))
    e.pop("PYTHONPATH", None)
    return {"env": e, "state": state, "reg": reg, "tmp": tmp_path}


def bpfhol(env, *args, stdin=""):
    return subprocess.run([sys.executable, str(BPFHOL), *args], input=stdin, capture_output=True,
                          text=True, env=env["env"], timeout=30)


def calls(env):
    f = env["state"] / "calls"
    return f.read_text().splitlines() if f.exists() else []


def no_traceback(res):
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_start_status_stop_cycle(env):
    res = bpfhol(env, "start", "kprobes")
    no_traceback(res)
    assert res.returncode == 0, res.stderr
    assert "kprobeme: running (pid 4242)" in res.stdout
    assert "start bpfhol-kprobeme.service" in calls(env)

    res = bpfhol(env, "status")
    assert res.returncode == 0
    assert "kprobeme" in res.stdout and "running (pid 4242)" in res.stdout
    assert "crashy" in res.stdout and "stopped" in res.stdout

    res = bpfhol(env, "list")
    assert res.returncode == 0
    assert "kprobes: Linux kprobes with bpftrace" in res.stdout
    assert "workload kprobeme: running" in res.stdout

    res = bpfhol(env, "stop")
    assert res.returncode == 0
    assert "stop bpfhol-kprobeme.service bpfhol-crashy.service" in calls(env)
    assert "kprobeme: stopped" in res.stdout

    res = bpfhol(env, "stop", "kprobes")
    assert res.returncode == 0 and calls(env)[-2:][0] == "stop bpfhol-kprobeme.service"


def test_unknown_lab_and_bad_command_lines(env):
    res = bpfhol(env, "start", "nosuchlab")
    no_traceback(res)
    assert res.returncode == 2
    assert res.stderr.strip() == "bpfhol: unknown lab 'nosuchlab' (known labs: kprobes, other)"
    assert not calls(env)
    for args in (["frobnicate"], ["start"], ["start", "a", "b"], ["status", "x"]):
        res = bpfhol(env, *args)
        no_traceback(res)
        assert res.returncode == 2 and "usage:" in res.stderr
    res = bpfhol(env, "--help")
    assert res.returncode == 0 and "start LAB" in res.stdout


def test_workload_that_does_not_stay_up_is_reported(env):
    res = bpfhol(env, "start", "other")
    no_traceback(res)
    assert res.returncode == 1
    assert "FAILED (see: journalctl -u bpfhol-crashy.service)" in res.stdout
    assert "did not stay running: crashy" in res.stderr


def test_systemctl_failure_is_one_clear_line(env):
    reg = json.loads(env["reg"].read_text())
    reg["labs"].append({"name": "bad", "workloads": [{"name": "broken"}]})
    env["reg"].write_text(json.dumps(reg))
    res = bpfhol(env, "start", "bad")
    no_traceback(res)
    assert res.returncode == 1
    assert res.stderr.strip() == ("bpfhol: systemctl start bpfhol-broken.service failed: "
                                  "Job for bpfhol-broken.service failed.")


@pytest.mark.parametrize("content", [None, "{not json", '{"labs": 3}'])
def test_missing_or_broken_registry(env, content):
    if content is None:
        env["reg"].unlink()
    else:
        env["reg"].write_text(content)
    res = bpfhol(env, "list")
    no_traceback(res)
    assert res.returncode == 1
    assert res.stderr.startswith("bpfhol: ") and res.stderr.count("\n") == 1


def test_registry_drives_the_menu(env):
    res = bpfhol(env, stdin="")
    no_traceback(res)
    assert res.returncode == 0
    out = res.stdout
    assert "1) kprobes: start kprobeme" in out
    assert "2) other: start crashy" in out
    assert "3) stop all workloads" in out
    assert "4) status" in out
    assert "5) kprobes: check my answers" in out
    assert "7) exit" in out


def test_menu_bad_input_reprompts_then_works(env):
    res = bpfhol(env, stdin="x\n\n99\n0\n-1\n1\n4\n3\n7\n")
    no_traceback(res)
    assert res.returncode == 0
    assert res.stdout.count("Please type a number from 1 to 7.") == 5
    assert calls(env)[0] == "start bpfhol-kprobeme.service"
    assert "stop bpfhol-kprobeme.service bpfhol-crashy.service" in calls(env)
    assert "kprobeme: running (pid 4242)" in res.stdout


def test_menu_eof_and_quit(env):
    for stdin in ("", "1\n", "q\n"):
        res = bpfhol(env, stdin=stdin)
        no_traceback(res)
        assert res.returncode == 0


def test_menu_ctrl_c_exits_cleanly(env):
    proc = subprocess.Popen([sys.executable, str(BPFHOL)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env["env"])
    try:
        # Wait for the menu (a loaded host may take seconds to start python): a SIGINT before python has
        # its handler kills the process outright (-2), which is not what this test is about.
        deadline = time.monotonic() + 120
        first = ""
        while time.monotonic() < deadline and "bpfhol lab workloads" not in first:
            first += proc.stdout.readline()
        assert "bpfhol lab workloads" in first, first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 130
    assert "Traceback" not in out + err


def test_menu_error_in_action_keeps_menu(env):
    res = bpfhol(env, stdin="2\n7\n")        # crashy fails, menu goes on
    no_traceback(res)
    assert res.returncode == 0
    assert "did not stay running: crashy" in res.stderr
    assert res.stdout.count("bpfhol lab workloads") == 2


def test_check_without_grader_is_explained(env):
    res = bpfhol(env, "check", "kprobes")
    no_traceback(res)
    assert res.returncode == 1
    assert "self-check is not installed" in res.stderr


def test_check_runs_grader_self_check(env):
    pkg = env["tmp"] / "lib" / "grader"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import os, sys\n"
        "print('ARGS', sys.argv[1:])\n"
        "print('PYTHONPATH', os.environ['PYTHONPATH'])\n"
        "sys.exit(3)\n")
    res = bpfhol(env, "check", "kprobes")
    no_traceback(res)
    assert res.returncode == 3
    assert "ARGS ['self-check', '--local', 'kprobes']" in res.stdout
    assert f"PYTHONPATH {env['tmp'] / 'lib'}" in res.stdout
    res = bpfhol(env, "check", "nolab")
    assert res.returncode == 2


def _load_module():
    loader = importlib.machinery.SourceFileLoader("bpfhol_menu_under_test", str(BPFHOL))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_not_root_goes_through_sudo(monkeypatch):
    mod = _load_module()
    monkeypatch.setattr(mod.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(mod.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(mod.sys.stdin, "isatty", lambda: False, raising=False)
    assert mod.privileged(["/bin/systemctl", "start", "u"]) == \
        ["/usr/bin/sudo", "-n", "/bin/systemctl", "start", "u"]
    monkeypatch.setattr(mod.os, "geteuid", lambda: 0)
    assert mod.privileged(["/bin/systemctl", "start", "u"]) == ["/bin/systemctl", "start", "u"]


def test_installed_shebang_is_system_python():
    first = BPFHOL.read_text().splitlines()[0]
    assert first == "#!/usr/bin/python3"
    assert os.access(BPFHOL, os.X_OK)
