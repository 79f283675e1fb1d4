"""Who to grade and where: a roster from YAML/CSV, an Ansible inventory, or an ssh_config.

Ansible inventories (INI or YAML files, inventory folders with group_vars/ and host_vars/, ranges such as
lab[01:03], vault, inventory plugins) are read by Ansible itself through `ansible-inventory --list`, so the
grader sees the hosts, ports, users and keys that `ansible` would use.  Only where ansible-inventory is not
installed does a small built-in reader take over (host lines and their own variables; it says so on stderr).

A row may carry the student's LMS identity (name, email, lms_id, sis_id, login, section; in an inventory the
host variables bpfhol_name, bpfhol_email, ...), which the Canvas and Moodle exports use to match students.  A
`Username` column is the Moodle username (login), never the SSH account (that is `user`).  A Canvas gradebook
export used as the roster (header `Student,ID,...,Section`, with host columns added) keeps Canvas's columns: the
name, the Canvas `ID` (lms_id), SIS User ID, SIS Login ID, Integration ID, Root Account, Section; its non-student
rows ("Points Possible", "Muted"/"Manual Posting", the Test Student) are skipped (canvas_export_rows).

A roster the grader cannot read at all is a GraderError (one line, exit 2), and so is one that names a lab VM
twice (two rows, one host:port and one answers folder).  A bad ROW (missing host, duplicate id, missing key file)
becomes that student's "not gradable" result so the rest of the cohort is graded.
"""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .backend.ssh import key_mode_problem
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
    identity: dict = field(default_factory=dict)   # LMS identity: name, email, lms_id, sis_id, login, section


# LMS identity fields and the names they may have in a roster row or as inventory host variables.
IDENTITY_FIELDS = {
    "name": ("name", "full_name", "display_name", "bpfhol_name"),
    "email": ("email", "mail", "email_address", "bpfhol_email"),
    "lms_id": ("lms_id", "canvas_id", "lms_user_id", "bpfhol_lms_id"),
    "sis_id": ("sis_id", "sis_user_id", "id_number", "idnumber", "bpfhol_sis_id"),
    "login": ("login", "sis_login_id", "lms_login", "username", "bpfhol_login"),
    "section": ("section", "bpfhol_section"),
    "integration_id": ("integration_id", "bpfhol_integration_id"),
    "root_account": ("root_account", "bpfhol_root_account"),
}
ANSIBLE_TIMEOUT = 60
# The inventory variables the grader reads (others, possibly vaulted, are left alone).
USED_VARS = {"ansible_host", "ansible_port", "ansible_ssh_port", "ansible_user", "ansible_ssh_user",
             "ansible_ssh_private_key_file", "ansible_private_key_file", "bpfhol_student", "bpfhol_grader_user",
             "bpfhol_grader_key", "bpfhol_agent", "bpfhol_student_user", "bpfhol_answers"}
USED_VARS |= {alias for aliases in IDENTITY_FIELDS.values() for alias in aliases if alias.startswith("bpfhol_")}

# bpfhol_* variables the lab VM's own roles use (an inventory shared with the provisioning playbook has them).
# tests/unit/test_roster.py keeps this in step with roles/*/defaults/main.yml.
INVENTORY_OTHER_VARS = {"bpfhol_apt_cache_valid_time", "bpfhol_course_seed", "bpfhol_grader_pubkeys", "bpfhol_labs",
                        "bpfhol_labs_dir", "bpfhol_manifest_script", "bpfhol_menu_packages",
                        "bpfhol_menu_path", "bpfhol_prefix", "bpfhol_supported_architectures",
                        "bpfhol_supported_service_managers", "bpfhol_supported_versions"}

MAX_KEY_BYTES = 64 << 10      # an OpenSSH RSA-16384 private key is ~12 KiB


def key_problem(key):
    """Why ``key`` cannot be an SSH private key, or "" (checked before any connection): missing, too big, a
    public key, or readable by group or others (refused as OpenSSH refuses it).

    A .pub given as key was retried three times as "host unreachable"; a huge file given as key was read whole
    (1.3 GB RSS).  Only the first bytes are read, and the size is checked first."""
    path = Path(key)
    try:
        size = path.stat().st_size
        if not path.is_file():
            return "key file not found: %s" % key
        if size > MAX_KEY_BYTES:
            return "key file %s is %d bytes: not an SSH private key (give the private key file)" % (key, size)
        with open(path, "rb") as fh:
            head = fh.read(512)
    except FileNotFoundError:
        return "key file not found: %s" % key
    except OSError as exc:
        return "cannot read key file %s: %s" % (key, exc.strerror)
    text = head.decode("ascii", "replace").lstrip()
    if text.startswith(("ssh-", "ecdsa-", "sk-ssh", "sk-ecdsa")) or key.endswith(".pub"):
        private = key[:-4] if key.endswith(".pub") else "the file without .pub"
        return "key file %s is a public key: give the private key (%s)" % (key, private)
    return key_mode_problem(key)


def _unsafe_char(c):
    """Control, format (e.g. U+202E right-to-left override) and line/paragraph separator characters."""
    import unicodedata

    return unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")


def id_problem(student):
    """(shown id, problem) for a student id that carries control characters, else (student, "").

    A newline in an id printed a forged row in summary.txt and the terminal table ("alice 10/10 ok ok ok" above
    the real alice's 0/10); an escape or a bidi override changes what the instructor reads.  Such an id is never
    used as given: the row is not gradable, and the id is shown with those characters escaped (\\x0a, \\u202e)."""
    bad = [c for c in student if _unsafe_char(c)]
    if not bad:
        return student, ""
    shown = "".join(("\\x%02x" % ord(c) if ord(c) < 0x100 else "\\u%04x" % ord(c)) if _unsafe_char(c) else c
                    for c in student)
    return shown, ("student id %s has control characters (%s): rename it with plain characters"
                   % (shown[:80], ", ".join(sorted({"U+%04X" % ord(c) for c in bad}))))

# Every field a YAML/CSV row may have, by what it sets (first name found wins).
ROW_FIELDS = {
    "student": ("student", "id", "student_id", "bpfhol_student", "name"),
    "host": ("host", "hostname", "address", "ansible_host"),
    "user": ("user", "bpfhol_grader_user", "ansible_user", "ansible_ssh_user"),   # `username` is the LMS login
    "key": ("key", "identity_file", "key_file", "bpfhol_grader_key", "ansible_ssh_private_key_file",
            "ansible_private_key_file"),
    "agent": ("agent", "bpfhol_agent"),
    "student_user": ("student_user", "bpfhol_student_user"),
    "answers": ("answers", "bpfhol_answers"),
    "port": ("port", "ansible_port", "ansible_ssh_port"),
}
# Columns of Canvas and Moodle gradebook exports the grader does not read (a roster pasted from one keeps them).
LMS_EXPORT_COLUMNS = {"first_name", "last_name", "institution", "department", "last_access", "last_activity",
                      "total_activity", "last_downloaded_from_this_course"}
CANVAS_TOTALS = re.compile(r"^(unposted_)?(current|final|override)_(score|points|grade|status)")
LMS_ITEM_COLUMN = re.compile(r"\(.*\)$")       # an LMS's own item column: "Quiz 1 (23)", "Assignment: Lab (Real)"
KNOWN_FIELDS = {a for aliases in list(ROW_FIELDS.values()) + list(IDENTITY_FIELDS.values()) for a in aliases}


def _suggest(name, known):
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return "did you mean '%s'? " % close[0] if close else ""


def unknown_field(name, known=KNOWN_FIELDS, cutoff=None):
    """The one-line complaint for a roster field the grader does not read, or "" (a typo such as `studnet:` or
    `prot:` was silently ignored: the student was graded on port 22, or not at all)."""
    import difflib

    if name in known or name.startswith("_"):
        return ""
    if cutoff is not None and not difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff):
        return ""
    return "unknown field '%s' (%sknown: %s)" % (str(name)[:40], _suggest(name, known),
                                               ", ".join(["student", "host", "port", "user", "key", "agent",
                                                          "student_user", "answers"] + sorted(IDENTITY_FIELDS)))


def _entry_from_mapping(row, n, base_dir):
    def get(*names):
        for name in names:
            value = row.get(name)
            if value not in (None, ""):
                return str(value).strip()
        return ""

    student = get(*ROW_FIELDS["student"])
    entry = Entry(student=student or "row %d" % n)
    entry.host = get(*ROW_FIELDS["host"])
    entry.user = get(*ROW_FIELDS["user"]) or DEFAULT_USER
    key = get(*ROW_FIELDS["key"])
    if key:
        key = str(Path(key).expanduser())
        if not Path(key).is_absolute():
            key = str((base_dir / key).resolve())
    entry.key = key
    entry.agent = get(*ROW_FIELDS["agent"]) or DEFAULT_AGENT
    entry.student_user = get(*ROW_FIELDS["student_user"]) or "vagrant"
    entry.answers = get(*ROW_FIELDS["answers"])
    entry.identity = {name: get(*aliases)[:200] for name, aliases in IDENTITY_FIELDS.items() if get(*aliases)}
    if "name" not in entry.identity and (get("first_name") or get("last_name")):    # a Moodle export's columns
        entry.identity["name"] = ", ".join(n for n in (get("last_name"), get("first_name")) if n)[:200]
    port = get(*ROW_FIELDS["port"]) or "22"
    problems = [row["_problem"]] if row.get("_problem") else []
    entry.student, bad_id = id_problem(entry.student)
    if bad_id:
        problems.append(bad_id)
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
    bad_key = key_problem(key) if key else ""
    if bad_key:
        problems.append(bad_key)
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


def ansible_inventory_command():
    """ansible-inventory on PATH, or beside this Python (a venv with ansible that is not activated)."""
    found = shutil.which("ansible-inventory")
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-inventory"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _ansible_rows(path, command):
    """Rows from `ansible-inventory -i PATH --list`: hosts in group order, each with its merged variables."""
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="1", ANSIBLE_NOCOLOR="1",
               ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_COMMAND_WARNINGS="0")
    try:
        proc = subprocess.run([command, "-i", str(path), "--list"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=ANSIBLE_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        raise GraderError("ansible-inventory -i %s took more than %ds (an inventory plugin waiting on a cloud API?); "
                          "check it with `ansible-inventory -i %s --list`" % (path, ANSIBLE_TIMEOUT, path))
    except OSError as exc:
        raise GraderError("cannot run %s: %s" % (command, exc.strerror))
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        why = next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else "exit %d" % proc.returncode)
        hint = ("; give the vault password with ANSIBLE_VAULT_PASSWORD_FILE=FILE" if "vault" in proc.stderr.lower()
                else "")
        raise GraderError("ansible-inventory could not read %s: %s%s" % (path, why[:300], hint))
    try:
        data = json.loads(proc.stdout)
        hostvars = data.get("_meta", {}).get("hostvars", {})
    except (ValueError, AttributeError):
        raise GraderError("ansible-inventory -i %s printed no inventory JSON" % path)
    order = []

    def walk(group, seen):
        if group in seen or not isinstance(data.get(group), dict):
            return
        seen.add(group)
        order.extend(h for h in data[group].get("hosts", []) if h not in order)
        for child in data[group].get("children", []):
            walk(child, seen)

    walk("all", set())
    order += [h for h in hostvars if h not in order]
    for name in order:
        for var in (hostvars.get(name) or {}):
            if (str(var).startswith("bpfhol_") and var not in USED_VARS | INVENTORY_OTHER_VARS
                    and unknown_field(var, USED_VARS, cutoff=0.8)):
                raise GraderError("inventory %s, host %s: unknown variable '%s' (%sthe grader reads: %s)"
                                  % (path, name, var, _suggest(var, USED_VARS),
                                     ", ".join(sorted(v for v in USED_VARS if v.startswith("bpfhol_")))))
    rows = []
    for name in order:
        row = {k: _unvault(v, command, env, path) if isinstance(v, dict) and "__ansible_vault" in v else v
               for k, v in (hostvars.get(name) or {}).items() if k in USED_VARS}
        row.setdefault("bpfhol_student", name)
        row.setdefault("host", row.get("ansible_host", name))
        rows.append(row)
    return rows


def _unvault(value, command, env, path):
    """An inline `!vault` value: ansible-inventory --list prints it still encrypted; ansible-vault opens it with the
    password Ansible is configured with (ANSIBLE_VAULT_PASSWORD_FILE, ansible.cfg).  Never prompts."""
    import tempfile

    vault = str(Path(command).with_name("ansible-vault"))
    with tempfile.NamedTemporaryFile("w", suffix=".vault") as fh:
        fh.write(str(value["__ansible_vault"]))
        fh.flush()
        try:
            proc = subprocess.run([vault, "decrypt", "--output", "-", fh.name], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace", timeout=ANSIBLE_TIMEOUT, env=env,
                                  start_new_session=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GraderError("cannot open a vaulted variable of %s with ansible-vault: %s" % (path, exc))
    if proc.returncode != 0:
        raise GraderError("a vaulted variable in %s could not be decrypted; give the vault password with "
                          "ANSIBLE_VAULT_PASSWORD_FILE=FILE" % path)
    return proc.stdout


def _ansible_yaml(data):
    """all: {hosts: {name: vars}, children: {group: {...}}} -> rows (fallback without ansible-inventory)."""
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
    """Host lines and their inline variables (fallback without ansible-inventory)."""
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
        if re.search(r"\[[^\]]*:[^\]]*\]", parts[0]):
            raise GraderError("host ranges such as %s need ansible-inventory: pip install ansible-core (or pipx "
                              "install ansible-core), then rerun" % parts[0][:60])
        for part in parts[1:]:
            if "=" in part:
                k, v = part.split("=", 1)
                row[k] = v.strip("'\"")
        if "ansible_host" in row:
            row["host"] = row["ansible_host"]
        rows.append(row)
    return rows


def _without_match_blocks(text):
    """(text, count): the ssh_config with its Match blocks left out.

    paramiko's get_hostnames() raised KeyError('host') on any Match block (a traceback, exit 1), and a Match
    block's conditions (`exec` runs a command) are not something a grader should evaluate for a roster.  The
    students are the Host blocks; a Match block ends at the next Host or Match line, as in ssh_config(5)."""
    kept, skipping, count = [], False, 0
    for line in text.splitlines():
        word = line.strip().split(None, 1)[0].lower() if line.strip() else ""
        word = word.split("=", 1)[0]
        if word == "match":
            skipping, count = True, count + 1
            continue
        if word == "host":
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n", count


def _ssh_config(text, warn=None):
    import paramiko

    text, matches = _without_match_blocks(text)
    if matches and warn:
        warn("ssh_config roster: %d Match block(s) ignored (students are read from Host blocks only; put options "
             "they need in those Host blocks)" % matches)
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


def _is_ansible_yaml(data):
    return isinstance(data, dict) and ("plugin" in data or any(
        isinstance(g, dict) and ("hosts" in g or "children" in g) for g in data.values()))


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


def _inventory_rows(path, text, fmt, warn):
    """An Ansible inventory through ansible-inventory; the built-in reader only when Ansible is not installed."""
    command = ansible_inventory_command()
    if command:
        return _ansible_rows(path, command)
    if path.is_dir():
        raise GraderError("roster %s is an inventory folder: reading it needs ansible-inventory "
                          "(pip install ansible-core)" % path)
    warn("bpfhol-grade: note: ansible-inventory not found; reading %s with the built-in reader (host lines only: "
         "no group vars, ranges or vault; pip install ansible-core for those)" % path)
    if fmt == "ini":
        return _ansible_ini(text)
    try:
        return _ansible_yaml(yaml.safe_load(text) or {})
    except yaml.YAMLError:
        raise GraderError("roster %s is not valid YAML" % path)


def load_roster(path, fmt=None, warn=None):
    path = Path(path)
    warn = warn or (lambda line: print(line, file=sys.stderr))
    if path.is_dir() and fmt in (None, "ansible", "ini", "yaml"):
        entries = _from_rows(_inventory_rows(path, "", "ansible", warn), path)
        return _checked(entries, path)
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise GraderError("roster not found: %s (give a YAML/CSV roster, an Ansible inventory or an ssh_config)" % path)
    except OSError as exc:
        raise GraderError("cannot read roster %s: %s" % (path, exc.strerror))
    if len(text) > 8 << 20:
        raise GraderError("roster %s is larger than 8 MiB; split the cohort" % path)
    # Excel's "CSV UTF-8" (and some LMS exports) start with a byte-order mark: without this the first header
    # read "\ufeffstudent" and the roster was refused, or its first column (e.g. "SIS User ID") dropped.
    text = text[1:] if text.startswith("\ufeff") else text
    fmt = fmt or detect_format(path, text)
    base = path.parent
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        headers = {re.sub(r"\s+", "_", (f or "").strip().lower()) for f in reader.fieldnames or []}
        if not {"student", "id", "student_id"} & headers:
            raise GraderError("roster %s: the CSV needs a header row with student,host,port,user,key" % path)
        # "SIS User ID" and sis_user_id are the same column (headers pasted from an LMS export work)
        rows = [{re.sub(r"\s+", "_", (k or "").strip().lower()): v for k, v in r.items()} for r in reader]
        if is_canvas_export(reader.fieldnames):
            rows = canvas_export_rows(rows, path, warn)
        # An LMS export has columns of its own (Last Access, Total): those are left alone, but a header one typo
        # away from a field the grader reads (Studnet, Prot) stops the run.
        for header in sorted(headers):
            lms_own = header in LMS_EXPORT_COLUMNS or CANVAS_TOTALS.match(header) or LMS_ITEM_COLUMN.search(header)
            problem = unknown_field(header, cutoff=0.7) if header and not lms_own else ""
            if problem:
                raise GraderError("roster %s: CSV column %s" % (path, problem))
    elif fmt == "ssh_config":
        rows = _ssh_config(text, warn)
    elif fmt in ("ini", "ansible"):
        rows = _inventory_rows(path, text, fmt, warn)
    elif fmt == "yaml":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise GraderError("roster %s is not valid YAML%s" % (path, " (line %d)" % (mark.line + 1) if mark else ""))
        if isinstance(data, dict) and isinstance(data.get("students"), list):
            rows = _strict(data["students"], path)
        elif isinstance(data, list):
            rows = _strict(data, path)
        elif _is_ansible_yaml(data):
            rows = _inventory_rows(path, text, "yaml", warn)
        else:
            raise GraderError("roster %s: expected a list of students (student, host, port, user, key) "
                              "or an Ansible inventory" % path)
    else:
        raise GraderError("unknown roster format %r: use yaml, csv, ansible (ini) or ssh_config" % fmt)
    return _checked(_from_rows(rows, base), path)


def is_canvas_export(fieldnames):
    """Canvas's gradebook export header, as its importer recognises one: Student, ID first, a Section column."""
    names = [(f or "").strip() for f in fieldnames or []]
    return len(names) > 3 and names[:2] == ["Student", "ID"] and "Section" in names


CANVAS_NOT_STUDENTS = re.compile(r"^\s*(Muted|Manual Posting.*)?\s*$", re.I)
CANVAS_TEST_STUDENT = ("Student, Test", "Test Student")


def canvas_export_rows(rows, path, warn):
    """A Canvas gradebook export as roster rows: its Student column is the name, its ID the Canvas user ID
    (lms_id), and the student id is a column the instructor added (student_id, bpfhol_student), else the SIS Login
    ID, else a Username column, else the SIS User ID, else the Canvas ID.  Rows Canvas's own importer does not read
    as students are left out: the "Points Possible" row, a row of "Muted"/"Manual Posting" marks or blanks, and
    Canvas's Test Student.  Before this, "Points Possible" was graded as a student and the ID column was dropped."""
    kept, skipped = [], []
    for row in rows:
        name = (row.get("student") or "").strip()
        cells = [v for k, v in row.items() if k is not None and isinstance(v, str)]
        if "Points Possible" in name:
            skipped.append("Points Possible")
            continue
        if all(CANVAS_NOT_STUDENTS.match(v) for v in cells):
            skipped.append("Muted/Manual Posting")
            continue
        if name in CANVAS_TEST_STUDENT:
            skipped.append(name)
            continue
        row = dict(row)
        row.pop("student", None)
        canvas_id = (row.pop("id", None) or "").strip()
        row["name"] = row.get("name") or name
        row["lms_id"] = row.get("lms_id") or canvas_id
        if not (row.get("student_id") or row.get("bpfhol_student")):
            row["student_id"] = next((v.strip() for v in (row.get("sis_login_id"), row.get("username"),
                                                          row.get("sis_user_id"), canvas_id) if (v or "").strip()), "")
        kept.append(row)
    if skipped:
        warn("roster %s is a Canvas gradebook export: left out its non-student rows (%s); each student's id is "
             "their SIS Login ID, else SIS User ID, else Canvas ID (or a student_id column)"
             % (path, ", ".join(sorted(set(skipped)))))
    return kept


def _strict(rows, path):
    """A YAML roster is written by hand: a field the grader does not read is a typo, named with the fix."""
    for n, row in enumerate(rows, 1):
        for name in (row if isinstance(row, dict) else ()):
            problem = unknown_field(str(name))
            if problem:
                raise GraderError("roster %s, student %d: %s" % (path, n, problem))
    return rows


def _checked(entries, path):
    """No students is an error; a repeated student id makes that row not gradable; a bad key file that several
    rows share is the instructor's, so it stops the run in one line (exit 2) instead of failing every student."""
    if not entries:
        raise GraderError("roster %s lists no students" % path)
    shared = {}
    for entry in entries:
        if entry.key:
            shared.setdefault(entry.key, []).append(entry)
    for key, users in shared.items():
        problem = key_problem(key) if len(users) > 1 else ""
        if problem:
            raise GraderError("roster %s: %s (used by %d rows)" % (path, problem, len(users)))
    seen = {}
    for i, entry in enumerate(entries):
        if entry.student in seen:
            entry.problem = "duplicate student id (row %d repeats row %d)" % (i + 1, seen[entry.student] + 1)
            entry.student = "%s (row %d)" % (entry.student, i + 1)
        else:
            seen[entry.student] = i
    _refuse_shared_vms(entries, path)
    return entries


def answers_place(entry):
    """Where a row's scripts are read on its host, as the roster names it: its `answers` folder, else the home
    of its `student_user` (the lab's answers_dir under it).  Rows of a VM roster (submissions mode) name
    neither, so any two of them naming one host:port compare equal here."""
    return entry.answers.rstrip("/") if entry.answers else "~%s" % entry.student_user


def _refuse_shared_vms(entries, path):
    """Two usable rows naming one host:port and one answers folder are one VM graded twice: the second student
    got the first one's 10/10, silently.  That stops the run in one line naming both rows (exit 2).  Rows that
    name their own answers folder (or student account) on a shared host are different students and allowed;
    rows already not gradable never connect, so they cannot copy anyone's grade."""
    first = {}
    for i, entry in enumerate(entries):
        if entry.problem or not entry.host:
            continue
        place = (entry.host.lower(), entry.port, answers_place(entry))
        if place in first:
            j, other = first[place]
            raise GraderError("roster %s: rows %d (%s) and %d (%s) both name %s:%d and the same answers folder (%s):"
                              " one lab VM would be graded twice; give each row its own host or port (on a shared "
                              "host, its own answers: folder)" % (path, j + 1, other.student, i + 1, entry.student,
                                                                  entry.host, entry.port, place[2]))
        first[place] = (i, entry)
