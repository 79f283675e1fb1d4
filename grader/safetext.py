"""The one rule for text that came from a host or a student: what every report format can carry.

Text from a lab VM is untrusted (in cohort mode the student is root there and can forge the agent's
reply).  JSON can smuggle in code points no report can hold: a lone surrogate escape ("\\ud800")
cannot even be encoded as UTF-8, and XML 1.0 forbids C0 controls and U+FFFE/U+FFFF, so one such
character made junit.xml unparseable or the report writer raise.  The rule, applied where a reply
enters the grader (grader/backend) and again by every report writer (reports.clean):

- bytes are decoded as UTF-8 with U+FFFD for whatever is not UTF-8;
- a lone surrogate becomes U+FFFD (replaced, so a reader sees that something was there);
- terminal escape sequences (CSI, OSC) are removed whole;
- removed: C0 controls except tab and newline (XML 1.0 forbids them; CR is dropped too, as reports
  end lines themselves), DEL, C1 controls U+0080-U+009F (XML 1.0 allows them but discourages them,
  XML 1.1 forbids them raw, and U+009B is a one-character CSI for some terminals), and U+FFFE/U+FFFF.
"""

import math
import re

ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")
SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DEPTH = 64


def safe_text(value):
    """``value`` (str or bytes) as text that UTF-8, XML 1.0, HTML and CSV can all carry."""
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
    else:
        text = value if isinstance(value, str) else str(value)
    text = SURROGATE.sub("\ufffd", text)
    return FORBIDDEN.sub("", ESCAPES.sub("", text))


def safe_tree(value, depth=0):
    """A parsed JSON document with every string (keys too) made safe; nesting deeper than
    MAX_DEPTH is cut (a forged reply can nest arrays thousands deep)."""
    if isinstance(value, str):
        return safe_text(value)
    if depth >= MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {safe_text(k): safe_tree(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [safe_tree(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None                     # NaN/Infinity are not JSON; a later json.dumps would write them
    return value
