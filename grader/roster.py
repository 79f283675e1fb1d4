"""Who to grade and where: a roster from YAML/CSV, an Ansible inventory, or an ssh_config.

A roster the grader cannot read at all is a GraderError (one line, exit 2).  A bad ROW
(missing host, duplicate id, missing key file) becomes that student's "not gradable"
result so the rest of the cohort is graded.
"""

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import GraderError

DEFAULT_USER = "bpfhol-grader"
DEFAULT_AGENT = "/opt/bpfhol/sbin/bpfhol-agent"
AGENT_PATH = re.compile(r"^/[A-Za-z0-9_./-]+$")
HOSTNAME = re.compile(r"^[A-Za-z0-9_.:%-]{1,253}$")


@dataclass
class Entry:
    student: str
    host: str = ""
    port: int = 22
    user: str = DEFAULT_USER
    key: str = ""
    agent: str = DEFAULT_AGENT
    student_user: str = "vagrant"   # whose ~/answers holds the scripts (cohort mode)
    answers: str = ""               # answers folder on the host, when not the lab's ~<student_user>/answers/<lab>
    problem: str = ""      # set when the row cannot be used; graded as "not gradable: <problem>"


def _entry_from_mapping(row, n, base_dir):
    def get(*names):
        for name in names:
            value = row.get(name)
            if value not in (None, ""):
                return str(value).strip()
        return ""

    student = get("student", "id", "student_id", "name")
    entry = Entry(student=student or "row %d" % n)
    entry.host = get("host", "hostname", "address", "ansible_host")
    entry.user = get("user", "username", "ansible_user") or DEFAULT_USER
    key = get("key", "identity_file", "key_file", "ansible_ssh_private_key_file")
    if key:
        key = str(Path(key).expanduser())
        if not Path(key).is_absolute():
            key = str((base_dir / key).resolve())
    entry.key = key
    entry.agent = get("agent") or DEFAULT_AGENT
    entry.student_user = get("student_user") or "vagrant"
    entry.answers = get("answers")
    port = get("port", "ansible_port") or "22"
    problems = []
    if not student:
        problems.append("roster row %d has no student id" % n)
    if not entry.host:
        problems.append("no host given")
    elif not HOSTNAME.match(entry.host):
        problems.append("host %r is not a host name or address" % entry.host[:80])
    try:
        entry.port = int(port)
        if not 0 < entry.port < 65536:
            raise ValueError
    except ValueError:
        problems.append("port %r is not a port number" % port[:20])
        entry.port = 22
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", entry.user):
        problems.append("user %r is not a valid user name" % entry.user[:40])
    if not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", entry.student_user):
        problems.append("student_user %r is not a valid user name" % entry.student_user[:40])
    if key and not Path(key).is_file():
        problems.append("key file not found: %s" % key)
    if entry.answers and (not AGENT_PATH.match(entry.answers) or ".." in entry.answers):
        problems.append("answers must be an absolute plain path")
    if not AGENT_PATH.match(entry.agent) or ".." in entry.agent:
        problems.append("agent path must be an absolute plain path")
    entry.problem = "; ".join(problems)
    return entry


def _from_rows(rows, base_dir):
    entries = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            entries.append(Entry(student="row %d" % n, problem="roster row %d is not a mapping of fields" % n))
            continue
        entries.append(_entry_from_mapping(row, n, base_dir))
    return entries


def _ansible_yaml(data):
    """all: {hosts: {name: vars}, children: {group: {...}}} -> rows."""
    rows = []

    def walk(group):
        if not isinstance(group, dict):
            return
        for name, hvars in (group.get("hosts") or {}).items():
            row = dict(hvars or {})
            row.setdefault("student", name)
            row.setdefault("host", row.get("ansible_host", name))
            rows.append(row)
        for child in (group.get("children") or {}).values():
            walk(child)

    for group in data.values():
        walk(group)
    return rows


def _ansible_ini(text):
    rows, section = [], None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip() if not raw.lstrip().startswith(("#", ";")) else ""
        if not line:
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section and (":vars" in section or ":children" in section):
            continue
        parts = line.split()
        row = {"student": parts[0], "host": parts[0]}
        for part in parts[1:]:
            if "=" in part:
                k, v = part.split("=", 1)
                row[k] = v.strip("'\"")
        if "ansible_host" in row:
            row["host"] = row["ansible_host"]
        rows.append(row)
    return rows


def _ssh_config(text):
    import paramiko

    config = paramiko.SSHConfig.from_text(text)
    rows = []
    for name in sorted(config.get_hostnames()):
        if any(c in name for c in "*?!"):
            continue
        opts = config.lookup(name)
        key = opts.get("identityfile") or [""]
        rows.append({"student": name, "host": opts.get("hostname", name), "port": opts.get("port", "22"),
                     "user": opts.get("user", DEFAULT_USER), "key": key[0]})
    return rows


def detect_format(path, text):
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if re.search(r"(?im)^\s*Host\s+\S", text) and re.search(r"(?im)^\s+HostName\s", text):
        return "ssh_config"
    if suffix in (".yml", ".yaml", ".json"):
        return "yaml"
    if re.search(r"(?m)^\s*\[[^\]]+\]\s*$", text) or "ansible_host=" in text:
        return "ini"
    return "yaml"


def load_roster(path, fmt=None):
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise GraderError("roster not found: %s (give a YAML/CSV roster, an Ansible inventory or an ssh_config)" % path)
    except OSError as exc:
        raise GraderError("cannot read roster %s: %s" % (path, exc.strerror))
    if len(text) > 8 << 20:
        raise GraderError("roster %s is larger than 8 MiB; split the cohort" % path)
    fmt = fmt or detect_format(path, text)
    base = path.parent
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or not ({"student", "id", "student_id"} & {f.strip() for f in reader.fieldnames}):
            raise GraderError("roster %s: the CSV needs a header row with student,host,port,user,key" % path)
        rows = [{(k or "").strip(): v for k, v in r.items()} for r in reader]
    elif fmt == "ssh_config":
        rows = _ssh_config(text)
    elif fmt == "ini":
        rows = _ansible_ini(text)
    elif fmt == "yaml":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise GraderError("roster %s is not valid YAML%s" % (path, " (line %d)" % (mark.line + 1) if mark else ""))
        if isinstance(data, dict) and isinstance(data.get("students"), list):
            rows = data["students"]
        elif isinstance(data, list):
            rows = data
        elif isinstance(data, dict) and any(isinstance(g, dict) and ("hosts" in g or "children" in g)
                                            for g in data.values()):
            rows = _ansible_yaml(data)
        else:
            raise GraderError("roster %s: expected a list of students (student, host, port, user, key) "
                              "or an Ansible inventory" % path)
    else:
        raise GraderError("unknown roster format %r: use yaml, csv, ini or ssh_config" % fmt)
    entries = _from_rows(rows, base)
    if not entries:
        raise GraderError("roster %s lists no students" % path)
    seen = {}
    for i, entry in enumerate(entries):
        if entry.student in seen:
            entry.problem = "duplicate student id (row %d repeats row %d)" % (i + 1, seen[entry.student] + 1)
            entry.student = "%s (row %d)" % (entry.student, i + 1)
        else:
            seen[entry.student] = i
    return entries
