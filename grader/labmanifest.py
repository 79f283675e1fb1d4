#!/usr/bin/env python3
"""What a lab's manifest (labs/<lab>/lab.yaml) tells the layers outside grading: the programs its menu runs, the
Debian packages its VM needs, and the probe kind its host must attach.

One reader for every layer: the grader (grader/labspec.py, preflight) imports it, and the roles run it on the
Ansible controller (``python3 grader/labmanifest.py LABS_DIR LAB...`` prints the labs' manifests as JSON), so a
lab is installed by naming it in ``bpfhol_labs`` and nobody keeps a second list of titles or workloads.

    title: User-space probes with bpftrace
    menu:                     # what `bpfhol start <lab>` runs: binaries of workload/Makefile, bpfhol-<program>.service
      - program: shopd
        args: []              # the menu copy's arguments (it runs until stopped)
        description: takes orders, fetches quotes ...
    host_packages: []         # Debian packages beyond bpftrace and the C toolchain (a USDT lab: systemtap-sdt-dev)
    host_probe: uprobe        # kprobe, uprobe or tracepoint: what provisioning and `preflight --lab` prove
    checks_module: checks.py  # (grading) its checks: roles/lab_text installs this file or package on the VM

Without ``menu`` the menu runs ``workload.program`` with no arguments; without ``host_probe`` the lab needs kprobes
(the first lab's kind).  Standard library and PyYAML only (the controller's Python has both).
"""

import json
import re
import sys
from pathlib import Path

import yaml

PROBE_KINDS = ("kprobe", "uprobe", "tracepoint")
LAB_NAME = re.compile(r"[a-z0-9_-]{1,40}")
PROGRAM = re.compile(r"[a-z][a-z0-9_-]{0,31}")
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]{0,99}")        # a Debian package name
MENU_ARG = re.compile(r"[A-Za-z0-9_.,:/=+-]{1,200}")       # one word of a systemd ExecStart= line, no quoting needed
CHECKS_MODULE = re.compile(r"[a-z_][a-z0-9_]{0,39}(\.py)?")   # a file (checks.py) or package folder (checks/)


class ManifestError(ValueError):
    """A lab.yaml whose manifest fields are wrong: one line saying which field to fix."""


def manifest_of(spec, where="lab.yaml"):
    """The manifest fields of a lab spec (a dict), checked: {title, menu, host_packages, host_probe,
    checks_module} (checks_module: '' for none)."""
    if not isinstance(spec, dict):
        raise ManifestError("%s: must be a mapping of fields (name, workload, exercises, ...)" % where)
    program = str((spec.get("workload") or {}).get("program", "")) if isinstance(spec.get("workload"), dict) else ""
    menu = spec.get("menu")
    if menu is None:
        menu = [{"program": program}] if PROGRAM.fullmatch(program) else []
    if not isinstance(menu, list):
        raise ManifestError("%s: menu must list the programs the menu runs, like [{program: %s}]"
                            % (where, program or "<program>"))
    entries = []
    for i, item in enumerate(menu):
        if not isinstance(item, dict) or not set(item) <= {"program", "args", "description"} \
                or not PROGRAM.fullmatch(str(item.get("program", ""))):
            raise ManifestError("%s: menu[%d] must be {program: <plain name>, args: [...], description: ...}"
                                % (where, i))
        args = item.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, (str, int)) and not isinstance(a, bool)
                                                 and MENU_ARG.fullmatch(str(a)) for a in args):
            raise ManifestError("%s: menu[%d].args must list plain words (letters, digits, _ . , : / = + -)"
                                % (where, i))
        entries.append({"program": str(item["program"]), "args": [str(a) for a in args],
                        "description": str(item.get("description") or "")[:300]})
    if len({e["program"] for e in entries}) != len(entries):
        raise ManifestError("%s: menu names a program twice" % where)
    packages = spec.get("host_packages") or []
    if not isinstance(packages, list) or not all(isinstance(p, str) and PACKAGE.fullmatch(p) for p in packages):
        raise ManifestError("%s: host_packages must list Debian package names, like [systemtap-sdt-dev]" % where)
    probe = spec.get("host_probe", "kprobe")
    if probe not in PROBE_KINDS:
        raise ManifestError("%s: host_probe must be one of %s (the probe kind the lab's host must attach)"
                            % (where, ", ".join(PROBE_KINDS)))
    checks = spec.get("checks_module") or ""
    if checks and not (isinstance(checks, str) and CHECKS_MODULE.fullmatch(checks)):
        raise ManifestError("%s: checks_module must be a file or folder name in the lab folder, like checks.py" % where)
    return {"title": str(spec.get("title") or spec.get("name") or ""), "menu": entries,
            "host_packages": list(packages), "host_probe": probe, "checks_module": checks}


def read_manifest(lab_dir):
    """The manifest of the lab folder ``lab_dir`` (its lab.yaml, read with yaml.safe_load)."""
    path = Path(lab_dir) / "lab.yaml"
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ManifestError("%s: cannot read (%s); is %s a lab folder?" % (path, exc.strerror, Path(lab_dir).name))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ManifestError("%s: not valid YAML%s; fix the syntax" % (path, " at line %d" % (mark.line + 1)
                                                                      if mark else ""))
    return manifest_of(spec, str(path))


def labs_manifest(labs_dir, labs):
    """{labs: {name: manifest}, host_packages: [...], host_probes: [...]} of the labs named (bpfhol_labs)."""
    out = {}
    for name in labs:
        if not LAB_NAME.fullmatch(str(name)):
            raise ManifestError("bpfhol_labs: %r is not a lab folder name" % (name,))
        lab_dir = Path(labs_dir) / name
        if not (lab_dir / "lab.yaml").is_file():
            known = sorted(p.name for p in Path(labs_dir).iterdir() if (p / "lab.yaml").is_file()) \
                if Path(labs_dir).is_dir() else []
            raise ManifestError("bpfhol_labs names %r, but %s has no lab.yaml (labs there: %s)"
                                % (name, lab_dir, ", ".join(known) or "none"))
        out[name] = read_manifest(lab_dir)
    return {"labs": out,
            "host_packages": sorted({p for m in out.values() for p in m["host_packages"]}),
            "host_probes": sorted({m["host_probe"] for m in out.values()})}


def main(argv):
    if not argv:
        print("usage: labmanifest.py LABS_DIR [LAB...]   prints the labs' manifests as JSON", file=sys.stderr)
        return 2
    try:
        print(json.dumps(labs_manifest(argv[0], argv[1:]), sort_keys=True))
    except ManifestError as exc:
        print("labmanifest.py: %s" % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
