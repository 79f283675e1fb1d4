"""`python -m grader`: the CLI, with one line instead of a traceback when the grader's Python packages are missing.

Commands that reach hosts over SSH check for their packages before doing anything (a grade run would otherwise
record every student as "not gradable").  `self-check --local`, `labs` and `report` need PyYAML only: the lab VM's
self-check runs with python3-yaml and nothing else.
"""

import importlib.util
import sys
from pathlib import Path

from .cli import EXIT_INPUT, main

DEPENDENCIES = {"paramiko", "fabric", "invoke", "yaml"}


def how_to_install():
    """What to run: the checkout's venv when scripts/setup-host made one, else a pip install of the checkout."""
    checkout = Path(__file__).resolve().parent.parent
    venv_python = checkout / ".venv" / "bin" / "python"
    if venv_python.is_file() and Path(sys.prefix).resolve() != venv_python.parent.parent.resolve():
        return "use the checkout's venv: %s -m grader ..." % venv_python
    if (checkout / "pyproject.toml").is_file():
        return "run `pip install %s` (or scripts/setup-host, then .venv/bin/python -m grader ...)" % checkout
    return "run `pip install bpfhol` from the bpfhol checkout (`pip install .`)"


def missing_dependency(argv):
    """The first missing package the command needs, or None."""
    needed = ["yaml"]
    command = next((a for a in argv if not a.startswith("-")), "")
    if command in ("grade", "submissions", "preflight") or (command == "self-check" and "--local" not in argv):
        needed += ["paramiko", "invoke", "fabric"]
    return next((name for name in needed if importlib.util.find_spec(name) is None), None)


def complain(name):
    print("bpfhol-grade: error: the Python package %r is missing for %s; %s"
          % (name, sys.executable, how_to_install()), file=sys.stderr)
    return EXIT_INPUT


def run(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    missing = missing_dependency(argv)
    if missing:
        return complain(missing)
    try:
        return main(argv)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in DEPENDENCIES:
            raise
        return complain(exc.name)


if __name__ == "__main__":
    sys.exit(run())
