"""The grader as an instructor installs it, shared by every test that runs it from outside the checkout.

One wheel is built per test session; `installed` is a fresh venv holding only that wheel (no dependencies: the
"what to run" message is tested there), `installed_with_deps` another venv whose dependencies come from this test
environment through a .pth line (offline by design; `pip check` proves the wheel's requirements are met)."""

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(cmd, cwd, timeout=300, env=None):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root, REPO], cwd=root, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = root.glob("bpfhol-*.whl")
    return wheel


def _venv_with(wheel, root):
    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", venv], cwd=root, timeout=300)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    got = run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], cwd=root)
    assert got.returncode == 0, got.stderr[-2000:]
    outside = root / "elsewhere"
    outside.mkdir()
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=outside)
    return {"root": root, "python": python, "bin": venv / "bin", "outside": outside,
            "site": Path(purelib.stdout.strip()), "env": dict(os.environ, PYTHONPATH="")}


@pytest.fixture(scope="session")
def installed(built_wheel, tmp_path_factory):
    """The wheel alone in a venv: its dependencies are missing."""
    return _venv_with(built_wheel, tmp_path_factory.mktemp("install"))


@pytest.fixture(scope="session")
def _venv_with_deps(built_wheel, tmp_path_factory):
    where = _venv_with(built_wheel, tmp_path_factory.mktemp("install-deps"))
    deps = [p for p in site.getsitepackages() if Path(p, "paramiko").is_dir()]
    (where["site"] / "bpfhol-test-deps.pth").write_text("\n".join(deps) + "\n")
    return where


@pytest.fixture
def installed_with_deps(_venv_with_deps, tmp_path):
    """The wheel in a venv whose dependencies are this environment's (a .pth line), run from outside the checkout:
    `installed_with_deps["bin"] / "bpfhol-grade"` with `cwd=installed_with_deps["outside"]`,
    `env=installed_with_deps["env"]`.  The venv is the session's; the folder outside the checkout is this test's
    own (each test's results/<lab>, rosters and journals start empty)."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    return dict(_venv_with_deps, outside=outside)
