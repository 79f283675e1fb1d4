"""The small files an instructor writes beside a roster (extensions, overrides): CSV with a header, or YAML.

One reader so both say the same things the same way: a file that cannot be read, a CSV without the columns asked
for, YAML that does not parse, each one line naming the file and the fix (GraderError, exit 2).  YAML is read with
safe_load only; what shape it must have is the caller's to check."""

import csv
from pathlib import Path

from .errors import GraderError


def read_side_file(path, what, columns):
    """("csv", [(line, row dict)]) or ("yaml", data) for the instructor's file `path` (`what`: "overrides file")."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")                    # Excel's BOM is not part of the first column
    except OSError as exc:
        raise GraderError("cannot read the %s %s: %s" % (what, path, exc.strerror))
    if p.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not set(columns) <= set(reader.fieldnames or ()):
            raise GraderError("%s %s: its columns must be %s (found %s)"
                              % (what, path, ",".join(columns), ",".join(reader.fieldnames or ())[:80]))
        return "csv", [(i + 2, row) for i, row in enumerate(reader)]
    import yaml

    try:
        return "yaml", yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GraderError("%s %s is not YAML (%s)" % (what, path, str(exc).splitlines()[0][:100]))
