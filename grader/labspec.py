"""Lab specs: labs/<lab>/lab.yaml, loaded with yaml.safe_load and validated up front.

A malformed spec is the instructor's error: one line saying which field to fix.
"""

import os
import random
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .checks import checks_of
from .errors import GraderError
from .labmanifest import ManifestError, manifest_of

_HERE = Path(__file__).resolve().parent
# A checkout (labs/ beside grader/, pyproject.toml at the top); a pip/pipx install (grader/labs/, package data);
# a lab VM (/opt/bpfhol/labs, installed by the roles).  Searched in this order.
REPO_LABS = _HERE.parent / "labs" if (_HERE.parent / "pyproject.toml").is_file() else None
PACKAGE_LABS = _HERE / "labs"
INSTALLED_LABS = Path("/opt/bpfhol/labs")
# Where the agent creates the randomized lab files (grader/agent.py: LAB_FILE_ROOT, root-only).
LAB_FILE_ROOT = "/run/bpfhol-lab"
SCRIPT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}\.bt$")
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
PROBE_TYPES = {"kprobe", "kretprobe", "tracepoint", "rawtracepoint", "uprobe", "uretprobe", "usdt",
               "fentry", "fexit", "kfunc", "kretfunc", "profile", "interval", "software", "hardware"}


@dataclass
class Exercise:
    id: str
    title: str
    script: str
    points: float
    check: str
    params: dict = field(default_factory=dict)
    hints: dict = field(default_factory=dict)
    visible: bool = True
    probe_on: list = field(default_factory=list)    # functions the question is about: a script must probe one


@dataclass
class Lab:
    name: str
    title: str
    path: Path
    answers_dir: str
    require_probe_types: list
    workload: dict
    window: float
    attach_timeout: float
    grace: float
    output_cap: int
    script_cap: int
    exercises: list
    lock_wait: float = None      # how long a job may wait for another on the same host (None: the agent's own)
    truth_spec: dict = field(default_factory=dict)   # lab.yaml "truth": required_event, summary
    spec_sha256: str = ""        # of lab.yaml as loaded: evidence names the spec a verdict was judged by
    checks: dict = field(default_factory=dict)       # check name -> function, from the lab's checks module
    checks_module: object = None  # that module (labs/<lab>/checks.py or checks/), for its helpers
    variant: dict = field(default_factory=dict)      # a course's names: canonical -> drawn (grader/variants.py)
    host_probe: str = "kprobe"   # the probe kind its hosts must attach (preflight --lab proves it; labmanifest.py)
    host_packages: list = field(default_factory=list)   # Debian packages its VM needs (the roles install them)
    menu: list = field(default_factory=list)         # what the VM's menu runs: [{program, args, description}]
    reason_labels: dict = field(default_factory=dict)  # words for the reason codes only this lab's checks return

    def identity(self):
        """What evidence records of the lab: a re-judge checks it, and lists points that changed since.  The
        checks' own code is named too (checks_sha256), so a verdict can be traced to the code that gave it."""
        return {"name": self.name, "spec_sha256": self.spec_sha256, "checks_sha256": checks_sha256(self.checks_module),
                "path": str(Path(self.path).resolve()), "points": {ex.id: ex.points for ex in self.exercises},
                "variant": dict(self.variant)}

    @property
    def workload_comm(self):
        """The workload's process name as the kernel shows it (comm: the program name, cut to 15 bytes)."""
        return str(self.workload.get("program", ""))[:15]

    def truth_summary(self, truth):
        """What a result records of the run's truth (lab.yaml ``truth.summary``: name -> "start.<field>" or
        "count <event>"), beside the pid and whether the barrier released the workload."""
        out = {"pid": truth.pid, "released": truth.released}
        for name, expr in (self.truth_spec.get("summary") or {}).items():
            if expr.startswith("count "):
                out[name] = len(truth.of(expr[len("count "):]))
            else:
                value = truth.start.get(expr[len("start."):])
                out[name] = value if isinstance(value, (int, float, bool)) or value is None else str(value)[:200]
        return out

    @property
    def max_score(self):
        return sum(ex.points for ex in self.exercises)

    def workload_run(self, rng=None):
        """The workload's arguments for one grading run, drawn as lab.yaml's ``workload.args`` says (the
        anti-cheat: answers differ each run), with ``duration-s`` the window.  Each argument is fixed or drawn:

        - ``{choice: [...]}``, ``{range: [lo, hi]}`` (integers, both ends included); with ``not_multiple_of: <arg>``
          a drawn multiple of that argument's value is moved one up;
        - ``{window_ms_over: <arg>}``: the window in ms divided by that argument (so <arg> iterations fill it);
        - ``{fresh_file: [stem, ...], decoy: true}``: a new file under /run/bpfhol-lab/<token>/ that the agent
          creates for this run (``create_file``) and, with ``decoy``, one beside it that the agent opens from
          another process during the window (``decoy_file``).

        Draws happen in the order lab.yaml lists the arguments (a seeded rng gives the same run every time)."""
        rng = rng or random.SystemRandom()
        spec = self.workload.get("args") or {}
        args, create, decoy = {}, None, None
        for key, value in spec.items():
            if isinstance(value, dict) and "fresh_file" in value:
                create, decoy = _fresh_files(value, rng)
                args[key] = create
            elif not (isinstance(value, dict) and "window_ms_over" in value):
                args[key] = draw(value, rng)
        for key, value in spec.items():
            other = value.get("not_multiple_of") if isinstance(value, dict) else None
            if other and int(args.get(other) or 0) > 1 and int(args[key]) % int(args[other]) == 0:
                args[key] = int(args[key]) + 1
        args["duration-s"] = int(self.window)
        for key, value in spec.items():
            if isinstance(value, dict) and "window_ms_over" in value:
                per = int(args.get(value["window_ms_over"]) or 0)
                if per > 0:
                    args[key] = int(self.window * 1000 // per)
        return {"program": self.workload["program"], "args": args, "create_file": create, "decoy_file": decoy}


def _fresh_files(value, rng):
    """(lab file, decoy or None) of a ``{fresh_file: [stem, ...], decoy: true}`` argument: one token names the
    run's folder and both files (same look, other names)."""
    token = "%016x" % rng.getrandbits(64) if not isinstance(rng, random.SystemRandom) else secrets.token_hex(8)
    create, other = ["%s/%s/%s-%s.dat" % (LAB_FILE_ROOT, token, rng.choice(value["fresh_file"]), part)
                     for part in (token[:6], token[6:12])]
    return create, (other if value.get("decoy") else None)


def draw(value, rng):
    """One value of a lab.yaml workload setting: fixed, {choice: [...]} or {range: [lo, hi]}."""
    if isinstance(value, dict) and "choice" in value:
        return rng.choice(value["choice"])
    if isinstance(value, dict) and "range" in value:
        lo, hi = value["range"]
        return rng.randint(int(lo), int(hi))
    return value


ARG_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
FIXED_ARG = re.compile(r"[A-Za-z0-9_.,:/=+-]{1,200}")     # what the agent passes on (its SAFE_ARG)
# Set by the grader's agent for every run (docs/workload-contract.md), never by a lab.
CONTRACT_ARGS = {"truth-log", "hold", "notify-fd", "duration-s"}
DRAWS = {"choice": {"not_multiple_of"}, "range": {"not_multiple_of"}, "window_ms_over": set(),
         "fresh_file": {"decoy"}}
DRAW_FORMS = ("{choice: [...]}, {range: [lo, hi]} (either with not_multiple_of: <arg>), {window_ms_over: <arg>} "
              "or {fresh_file: [stem, ...], decoy: true}")


def _workload_spec(workload, where):
    """lab.yaml's ``workload`` checked: a program and its arguments (fixed or drawn, see Lab.workload_run)."""
    extra = sorted(set(workload) - {"program", "args"})
    if extra:
        raise GraderError("%s: workload.%s is not a workload setting: give the program and its args, each fixed or "
                          "drawn (%s)" % (where, extra[0], DRAW_FORMS))
    args = workload.get("args") or {}
    if not isinstance(args, dict):
        raise GraderError("%s: workload.args must map option names to values or draws" % where)
    if sum(isinstance(v, dict) and "fresh_file" in v for v in args.values()) > 1:
        raise GraderError("%s: workload.args has more than one fresh_file (the agent makes one per run)" % where)
    for key, value in args.items():
        at = "%s: workload.args.%s" % (where, key)
        if not isinstance(key, str) or not ARG_NAME.fullmatch(key):
            raise GraderError("%s: workload.args: %r is not an option name (like leak-every)" % (where, key))
        if key in CONTRACT_ARGS:
            raise GraderError("%s is set by the grader for every run (docs/workload-contract.md); remove it" % at)
        if not isinstance(value, dict):
            if isinstance(value, (bool, list)) or value is None or not FIXED_ARG.fullmatch(str(value)):
                raise GraderError("%s must be a plain word or number, or a draw: %s" % (at, DRAW_FORMS))
            continue
        kinds = [k for k in DRAWS if k in value]
        if len(kinds) != 1 or not set(value) - {kinds[0]} <= DRAWS[kinds[0]]:
            raise GraderError("%s must be one draw: %s" % (at, DRAW_FORMS))
        _check_draw(kinds[0], value, key, args, at)
    return dict(workload, args=dict(args))


def _check_draw(kind, value, key, args, at):
    body = value[kind]
    plain = lambda v: not isinstance(v, (bool, dict, list)) and v is not None and FIXED_ARG.fullmatch(str(v))
    if kind == "choice" and not (isinstance(body, list) and body and all(plain(v) for v in body)):
        raise GraderError("%s: choice must list plain words or numbers" % at)
    if kind == "range" and not (isinstance(body, list) and len(body) == 2 and body[0] <= body[1] and all(
            isinstance(v, int) and not isinstance(v, bool) for v in body)):
        raise GraderError("%s: range must be [lo, hi], whole numbers, lo <= hi" % at)
    if kind == "fresh_file" and not (isinstance(body, list) and body and all(
            isinstance(v, str) and re.fullmatch(r"[a-z][a-z0-9_]{0,15}", v) for v in body)):
        raise GraderError("%s: fresh_file must list file name stems, like [notes, stats]" % at)
    for ref_key in ("not_multiple_of", "window_ms_over"):
        if ref_key in value:
            ref = value[ref_key]
            target = args.get(ref) if isinstance(ref, str) else None
            drawn_number = not isinstance(target, dict) or bool(set(target) & {"choice", "range"})
            if ref == key or ref not in args or not drawn_number:
                raise GraderError("%s: %s must name another numeric argument of workload.args" % (at, ref_key))


def _need(data, key, kind, where):
    if key not in data:
        raise GraderError("%s: missing field '%s'" % (where, key))
    if not isinstance(data[key], kind):
        raise GraderError("%s: field '%s' must be a %s" % (where, key, getattr(kind, "__name__", kind)))
    return data[key]


def find_lab_dir(name_or_path, labs_dir=None):
    """A lab by name (labs/<name>/ in the repo or on a lab VM) or by folder path."""
    candidate = Path(name_or_path)
    if candidate.is_dir() and (candidate / "lab.yaml").is_file():
        return candidate
    if not re.match(r"^[a-z0-9_-]{1,40}$", str(name_or_path)):
        raise GraderError("unknown lab %r: give a lab name such as 'kprobes' or a folder with lab.yaml" % name_or_path)
    roots = [Path(labs_dir)] if labs_dir else lab_roots()
    for root in roots:
        if (root / name_or_path / "lab.yaml").is_file():
            return root / name_or_path
    known = sorted(p.name for root in roots if root.is_dir() for p in root.iterdir() if (p / "lab.yaml").is_file())
    raise GraderError("unknown lab %r; known labs: %s" % (name_or_path, ", ".join(known) or "none"))


TRUTH_SUMMARY = re.compile(r"^(start\.[a-z_][a-z0-9_]{0,39}|count [a-z_][a-z0-9_]{0,39})$")


def _truth_spec(data, where):
    spec = data.get("truth") or {}
    if not isinstance(spec, dict) or not set(spec) <= {"required_event", "summary"}:
        raise GraderError("%s: truth must be a mapping with required_event and summary" % where)
    if "required_event" in spec and not re.fullmatch(r"[a-z_][a-z0-9_]{0,39}", str(spec["required_event"])):
        raise GraderError("%s: truth.required_event must be an event name of the workload's log, like open" % where)
    summary = spec.get("summary") or {}
    if not isinstance(summary, dict) or not all(
            re.fullmatch(r"[a-z_][a-z0-9_]{0,39}", str(k)) and TRUTH_SUMMARY.match(str(v)) for k, v in summary.items()):
        raise GraderError("%s: truth.summary maps names to \"start.<field>\" or \"count <event>\"" % where)
    return {"required_event": spec.get("required_event"), "summary": {str(k): str(v) for k, v in summary.items()}}


def load_checks_module(lab_dir, name, where):
    """A lab's own checks: a file (labs/<lab>/checks.py) or a package folder (labs/<lab>/checks/ with its
    __init__.py) in the lab folder, imported under a name of its own and registering its checks with
    grader.checks.check.  The lab folder is the instructor's, as trusted as lab.yaml."""
    import importlib.util
    import sys

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,39}(\.py)?", str(name)):
        raise GraderError("%s: checks_module must be a file or folder name in the lab folder, like checks.py" % where)
    path = Path(lab_dir) / name
    package = path.is_dir() and not str(name).endswith(".py")
    source = path / "__init__.py" if package else path
    if not source.is_file():
        raise GraderError("%s: checks_module %s not found in %s (a .py file, or a folder with __init__.py)"
                          % (where, name, lab_dir))
    module_name = "bpfhol_lab_checks_%s" % hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, source, submodule_search_locations=[str(path)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:       # the lab's code, not the student's: one line naming the file
        for loaded in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
            del sys.modules[loaded]
        raise GraderError("%s: %s failed to load: %s: %s" % (where, path, type(exc).__name__, exc))
    return module


def checks_sha256(module):
    """sha256 of a checks module's source: its file, or every .py of its package by relative name ('' for none)."""
    if module is None or not getattr(module, "__file__", None):
        return ""
    source = Path(module.__file__)
    files = sorted(source.parent.rglob("*.py")) if getattr(module, "__path__", None) else [source]
    digest = hashlib.sha256()
    for path in files:
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(source.parent)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def lab_checks(lab_dir, data, where, labs_dir=None, _seen=()):
    """(module, {name: check}) of a lab: its own checks_module, or the checks of the lab named by checks_from
    (a lab that asks another lab's questions with other probes).  A lab with neither has no checks."""
    if data.get("checks_module") and data.get("checks_from"):
        raise GraderError("%s: give checks_module or checks_from, not both" % where)
    if data.get("checks_module"):
        module = load_checks_module(lab_dir, data["checks_module"], where)
        return module, checks_of(module)
    other = data.get("checks_from")
    if not other:
        return None, {}
    if not isinstance(other, str) or not re.fullmatch(r"[a-z0-9_-]{1,40}", other) or other in _seen:
        raise GraderError("%s: checks_from must name another lab with its own checks_module, like kprobes" % where)
    for root in [Path(lab_dir).parent] + ([Path(labs_dir)] if labs_dir else []) + lab_roots():
        spec_file = root / other / "lab.yaml"
        if spec_file.is_file():
            try:
                other_data = yaml.safe_load(spec_file.read_text())
            except (OSError, yaml.YAMLError):
                raise GraderError("%s: checks_from: %s cannot be read; fix that lab first" % (where, spec_file))
            if not isinstance(other_data, dict):
                raise GraderError("%s: checks_from: %s is not a lab spec (a mapping); fix that lab first"
                                  % (where, spec_file))
            return lab_checks(spec_file.parent, other_data, str(spec_file), labs_dir, _seen + (other,))
    raise GraderError("%s: checks_from: no lab %r; known labs: %s" % (where, other, ", ".join(available_labs())))


VARIANT_FILE = "variant.json"      # a lab folder installed on a VM holds the course's names (roles/lab_text)


def lab_variant(lab_dir, data, where, course_seed=None, variant=None):
    """The names this lab is graded with: ``variant`` as given (a re-judge: the evidence's), else drawn from
    ``course_seed``, else the installed lab folder's variant.json (the VM's self-check), else none."""
    from . import variants

    try:
        choices = variants.choices_of(data, where)
    except variants.VariantError as exc:
        raise GraderError(str(exc))
    if variant is None and course_seed not in (None, ""):
        if not choices:
            raise GraderError("%s: --course-seed given, but this lab lists no variants" % where)
        variant = variants.draw(str(data.get("name")), data, course_seed)
    if variant is None and (Path(lab_dir) / VARIANT_FILE).is_file():
        try:
            import json

            variant = json.loads((Path(lab_dir) / VARIANT_FILE).read_text())
        except (OSError, ValueError):
            raise GraderError("%s is unreadable: re-run the lab playbook" % (Path(lab_dir) / VARIANT_FILE))
    variant = variant or {}
    if not isinstance(variant, dict) or not all(isinstance(k, str) and isinstance(v, str) and k in choices
                                                and v in choices[k] for k, v in variant.items()):
        raise GraderError("%s: the course variant %s does not fit this lab's variants (another version of the lab?)"
                          % (where, str(variant)[:120]))
    return dict(variant)


def load_lab(name_or_path, labs_dir=None, course_seed=None, variant=None):
    """A lab from its folder; with a course seed (or a variant: canonical -> drawn names) its program, titles,
    hints and probe_on say the course's names (grader/variants.py)."""
    lab_dir = find_lab_dir(name_or_path, labs_dir)
    spec_file = lab_dir / "lab.yaml"
    where = str(spec_file)
    try:
        text = spec_file.read_text()
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = " at line %d" % (mark.line + 1) if mark else ""
        raise GraderError("%s: not valid YAML%s; fix the syntax" % (where, at))
    except OSError as exc:
        raise GraderError("%s: cannot read (%s)" % (where, exc.strerror))
    if not isinstance(data, dict):
        raise GraderError("%s: must be a mapping of fields (name, workload, exercises, ...)" % where)
    workload = _need(data, "workload", dict, where)
    if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", str(workload.get("program", ""))):
        raise GraderError("%s: workload.program must be a plain program name" % where)
    workload = _workload_spec(workload, where)
    try:
        manifest = manifest_of(data, where)
    except ManifestError as exc:
        raise GraderError(str(exc))
    probe_types = data.get("require_probe_types") or []
    if not isinstance(probe_types, list) or not set(probe_types) <= PROBE_TYPES:
        raise GraderError("%s: require_probe_types must list probe kinds from %s" % (where, sorted(PROBE_TYPES)))
    checks_module, checks = lab_checks(lab_dir, data, where, labs_dir)
    truth_spec = _truth_spec(data, where)
    names = lab_variant(lab_dir, data, where, course_seed, variant)
    from .variants import rename

    workload = dict(workload, program=rename(str(workload["program"]), names))
    exercises = []
    seen = set()
    for i, ex in enumerate(_need(data, "exercises", list, where)):
        ewhere = "%s: exercises[%d]" % (where, i)
        if not isinstance(ex, dict):
            raise GraderError("%s must be a mapping" % ewhere)
        ex_id = str(_need(ex, "id", str, ewhere))
        script = str(_need(ex, "script", str, ewhere))
        check = str(_need(ex, "check", str, ewhere))
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,19}", ex_id):
            raise GraderError("%s: id must be a short lower-case name like q1 (it names columns and links)" % ewhere)
        if not SCRIPT_NAME.match(script):
            raise GraderError("%s: script must be a plain name like q1.bt" % ewhere)
        if check not in checks:
            raise GraderError("%s: unknown check %r; this lab's checks (its checks_module): %s"
                              % (ewhere, check, ", ".join(sorted(checks)) or "none"))
        if ex_id in seen:
            raise GraderError("%s: duplicate id %r" % (ewhere, ex_id))
        seen.add(ex_id)
        points = ex.get("points", 1)
        if not isinstance(points, (int, float)) or points < 0:
            raise GraderError("%s: points must be a number >= 0" % ewhere)
        probe_on = ex.get("probe_on") or []
        if not isinstance(probe_on, list) or not all(isinstance(f, str) and FUNCTION_NAME.fullmatch(f)
                                                     for f in probe_on):
            raise GraderError("%s: probe_on must list function names, like [process_order]" % ewhere)
        exercises.append(Exercise(id=ex_id, title=rename(str(ex.get("title", ex_id)), names), script=script,
                                  points=points, check=check, params=dict(ex.get("params") or {}),
                                  hints={str(k): rename(str(v), names) for k, v in (ex.get("hints") or {}).items()},
                                  visible=bool(ex.get("visible", True)),
                                  probe_on=[rename(f, names) for f in probe_on]))
    if not exercises:
        raise GraderError("%s: exercises must not be empty" % where)

    def num(key, default, lo, hi):
        value = data.get(key, default)
        if not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise GraderError("%s: %s must be a number from %s to %s" % (where, key, lo, hi))
        return value

    reason_labels = data.get("reason_labels") or {}
    if not isinstance(reason_labels, dict) or not all(
            isinstance(k, str) and re.fullmatch(r"[a-z][a-z0-9_]{0,39}", k) and isinstance(v, str) and 0 < len(v) <= 80
            for k, v in reason_labels.items()):
        raise GraderError("%s: reason_labels maps reason codes (like wrong_sums) to short words (at most 80 "
                          "characters)" % where)

    return Lab(
        name=str(_need(data, "name", str, where)), title=str(data.get("title", "")), path=lab_dir,
        answers_dir=str(data.get("answers_dir", "~/answers/%s" % data["name"])),
        require_probe_types=list(probe_types), workload=workload,
        window=num("window_seconds", 12, 2, 120), attach_timeout=num("attach_timeout_seconds", 60, 5, 240),
        grace=num("grace_seconds", 4, 1, 30), output_cap=int(num("output_cap_bytes", 262144, 1024, 8 << 20)),
        script_cap=int(num("script_cap_bytes", 65536, 256, 1 << 20)), exercises=exercises,
        lock_wait=num("lock_wait_seconds", 0, 0, 900) if "lock_wait_seconds" in data else None,
        spec_sha256=hashlib.sha256(text.encode("utf-8", "replace")).hexdigest(), truth_spec=truth_spec,
        checks=checks, checks_module=checks_module, variant=names, host_probe=manifest["host_probe"],
        host_packages=manifest["host_packages"],
        menu=[dict(entry, program=rename(entry["program"], names)) for entry in manifest["menu"]],
        reason_labels={str(k): str(v) for k, v in reason_labels.items()},
    )


def lab_roots():
    """Folders that hold labs/<name>/lab.yaml, first match wins."""
    return [root for root in (REPO_LABS, PACKAGE_LABS, INSTALLED_LABS) if root is not None]


def available_labs():
    return sorted({p.name for root in lab_roots() if root.is_dir()
                   for p in root.iterdir() if (p / "lab.yaml").is_file()})


def expand_home(path, user):
    """~/x for a student's user: /home/<user>/x (root: /root/x)."""
    if path.startswith("~/"):
        home = "/root" if user == "root" else "/home/%s" % user
        return os.path.join(home, path[2:])
    return path
