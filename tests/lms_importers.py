"""Canvas's and Moodle's grade importers, as far as they decide WHO a row's grade goes to, reimplemented in Python
from their source, so the tests can feed every CSV the grader writes through them (neither LMS runs here).

Canvas: canvas-lms app/models/gradebook_importer.rb (GradebookImporter#parse!, header?, update_column_count,
strip_non_assignment_columns, parse_assignments, check_for_non_student_row, process_student, process_submissions,
no_change_to_value?; the CSV converter decimal_comma_to_period).  Moodle: moodle grade/import/csv/classes/load_data.php
(prepare_import_grade_data, map_user_data_with_value, check_user_exists, update_grade_item, insert_grade_record).

What is left out: permissions, grading periods, pass/fail and letter grades, custom columns, override columns,
scales, groups (nothing the grader's files use).  Where the importers' versions differ, the stricter reading is
taken: Moodle matches an identifier exactly (newer versions fold the case of email and username)."""

import csv
import io
import re
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------------- Canvas


@dataclass
class CanvasUser:
    id: int
    name: str
    sortable_name: str = ""
    sis_user_id: str = ""
    login_id: str = ""          # the pseudonym's unique_id, which the "SIS Login ID" column names


@dataclass
class CanvasAssignment:
    title: str
    id: int = 0                 # 0: a new assignment the import would create
    points_possible: str = ""


@dataclass
class CanvasRow:
    line: int
    user: object                # the CanvasUser the row is credited to, or None: an unknown student
    grades: dict = field(default_factory=dict)      # assignment title -> the cell as the importer reads it


@dataclass
class CanvasImport:
    error: str = ""             # "Invalid header row": nothing imported
    assignments: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    skipped: list = field(default_factory=list)     # (line, why): the Points Possible row, Muted rows


NON_ASSIGNMENT = re.compile("Current Score|Current Points|Current Grade|Final Score|Final Points|Final Grade|"
                            "Override Score|Override Grade|Override Status")
MUTED = re.compile(r"^\s*(Muted|Manual Posting.*)?\s*$", re.I)


def decimal_comma_to_period(cell):
    """Canvas's CSV converter: a cell of digits, "." and "," is a number whose last separator is the decimal one."""
    if re.match(r"^-?[0-9.,]+%?$", cell):
        parts = re.split(r"[,.]", cell)
        last = parts.pop()
        return "".join(parts) + "." + last if parts else last
    return cell


def ruby_to_i(text):
    """String#to_i: the leading integer, 0 when there is none ("12ab" is 12)."""
    m = re.match(r"\s*([+-]?\d+)", text.replace("_", ""))
    return int(m.group(1)) if m else 0


def title_and_id(header):
    m = re.match(r"\A(.*)\s\((\d+)\)\Z", header, re.S)
    return (m.group(1), int(m.group(2))) if m else (header, 0)


def _csv_rows(text):
    lines = [ln for ln in text.splitlines(keepends=True) if not re.fullmatch(r"[;, ]+\r?\n?", ln)]
    return [[decimal_comma_to_period(c) for c in row] for row in csv.reader(io.StringIO("".join(lines)))]


def canvas_import(text, users, assignments=()):
    """What Canvas's Grades > Import makes of `text`: each student row's user (or None) and cells."""
    result = CanvasImport()
    rows = _csv_rows(text)
    if not rows:
        result.error = "empty file"
        return result
    header = rows[0]
    if not (len(header) > 3 and "Student" in header[0] and "ID" in header[1]):
        result.error = "Invalid header row"
        return result
    columns, sis_user, sis_login = 3, None, None
    if re.search(r"SIS\s+Login\s+ID", header[2]):
        sis_login, columns = 2, columns + 1
    elif re.search(r"SIS\s+User\s+ID", header[2]) and len(header) > 3 and re.search(r"SIS\s+Login\s+ID", header[3]):
        skip = 1 if len(header) > 4 and re.search(r"Integration\s+ID", header[4]) else 0
        sis_user, sis_login, columns = 2, 3, columns + 2 + skip
        if len(header) > 4 + skip and re.search(r"Root\s+Account", header[4 + skip]):
            columns += 1
    if len(header) < columns or "Section" not in header[columns - 1]:
        result.error = "Invalid header row"
        return result
    existing = {a.id: a for a in assignments}
    indices = {}
    for index, name in enumerate(header):
        if index < columns or NON_ASSIGNMENT.search(name):
            continue
        title, number = title_and_id(name)
        known = existing.get(number) or next((a for a in assignments if a.title == name), None)
        assignment = CanvasAssignment(title=known.title if known else title, id=known.id if known else 0,
                                      points_possible=known.points_possible if known else "")
        result.assignments.append(assignment)
        indices[index] = assignment
    by_id = {u.id: u for u in users}
    for line, row in enumerate(rows[1:], 2):
        if row and "Points Possible" in row[0]:
            for index, assignment in indices.items():
                if index < len(row) and row[index]:
                    assignment.points_possible = row[index]
            result.skipped.append((line, "Points Possible"))
            continue
        if all(MUTED.match(c) for c in row):
            result.skipped.append((line, "Muted"))
            continue
        user = by_id.get(ruby_to_i(row[1])) if len(row) > 1 and row[1].strip() else None
        if user is None and sis_user is not None and len(row) > sis_user and row[sis_user]:
            user = next((u for u in users if u.sis_user_id and u.sis_user_id == row[sis_user]), None)
        if user is None and sis_login is not None and len(row) > sis_login and row[sis_login]:
            user = next((u for u in users if u.login_id and u.login_id == row[sis_login]), None)
        if user is None:
            user = next((u for u in users if row[0] in (u.name, u.sortable_name)), None)
        grades = {a.title: (row[i].strip() if i < len(row) else "") for i, a in indices.items()}
        result.rows.append(CanvasRow(line=line, user=user, grades=grades))
    return result


def canvas_changes(imported, current):
    """{(user id, title): (old, new)} the import would make; `current` maps (user id, title) to the score now.
    Canvas's no_change_to_value?: equal, both blank (or "-"), or equal at two decimals is no change; a blank cell
    over a score is a change (it removes the score)."""
    changes = {}
    for row in imported.rows:
        if row.user is None:
            continue
        for title, new in row.grades.items():
            old = current.get((row.user.id, title), "")
            blank = (lambda v: v in ("", "-"))
            if new == old or (blank(new) and blank(old)):
                continue
            if not blank(new) and not blank(old) and "%.2f" % float(new) == "%.2f" % float(old):
                continue
            changes[(row.user.id, title)] = (old, new)
    return changes


# ---------------------------------------------------------------------------------------------------- Moodle


@dataclass
class MoodleUser:
    id: int
    email: str = ""
    username: str = ""
    idnumber: str = ""


@dataclass
class MoodleImport:
    aborted: str = ""           # the importer's error: the whole import is cancelled, nothing is imported
    grades: list = field(default_factory=list)      # (line, user id, grade or None, feedback or None)


MOODLE_FIELDS = {"useremail": "email", "username": "username", "useridnumber": "idnumber", "userid": "id"}


def php_empty(value):
    return value in ("", "0")


def moodle_import(text, users, map_from, map_to, grade_column, feedback_column=None, gradepointmax=100):
    """What Moodle's CSV grade import makes of `text`, mapped as the instructor maps it: `map_from` a column header,
    `map_to` one of useremail/username/useridnumber/userid, `grade_column` mapped to an existing grade item,
    `feedback_column` to its feedback."""
    result = MoodleImport()
    rows = list(csv.reader(io.StringIO(text.replace("\r\n", "\n").replace("\r", "\n"))))
    header = [h.strip() for h in rows[0]]
    column = {name: header.index(name) for name in (map_from, grade_column, feedback_column) if name}
    student = None                          # $this->studentid: set once per import, never reset per row
    for line, row in enumerate(rows[1:], 2):
        if len(row) <= 1:
            continue                        # "There is no data on this line"
        grade, feedback = None, None
        for index, raw in enumerate(row):
            value = raw.strip()
            if index == column[map_from]:
                if not php_empty(value):    # "Skip invalid row with blank user field": $this->studentid stays
                    field_name = MOODLE_FIELDS[map_to]
                    found = [u for u in users if str(getattr(u, field_name)) == value]
                    if not found:
                        result.aborted = "usermappingerror: %s %s not found (line %d)" % (field_name, value, line)
                        result.grades = []
                        return result
                    student = found[0].id
            elif index == column[grade_column]:
                if value in ("", "-"):
                    grade = None
                else:
                    try:
                        grade = float(value)        # unformat_float(strict) in a "." locale
                    except ValueError:
                        result.aborted = "badgrade: %r (line %d)" % (value, line)
                        result.grades = []
                        return result
            elif feedback_column and index == column[feedback_column]:
                feedback = value
        if not student:
            result.aborted = "usermappingerrorusernotfound (line %d)" % line
            result.grades = []
            return result
        if grade is not None and grade > gradepointmax:
            result.aborted = "gradevaluetoobig: %s > %s (line %d)" % (grade, gradepointmax, line)
            result.grades = []
            return result
        result.grades.append((line, student, grade, feedback))
    return result
