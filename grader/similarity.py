"""Similar scripts in a cohort: each question's scripts compared with each other and with the lab's reference
(labs/<lab>/solutions/), by winnowing (Schleimer, Wilkerson, Aiken: "Winnowing: local algorithms for document
fingerprinting", SIGMOD 2003, the method behind MOSS).

A script becomes tokens with what a copier changes cheaply made uniform (comments and whitespace dropped, map and
variable names, numbers and string literals each one token), then hashes of every K tokens in a row; in each
window of W hashes the smallest is kept (the fingerprints).  Two scripts share a copied run of K+W-1 tokens or
more only if they share a fingerprint.  A pair's similarity is the share of the smaller script's fingerprints the
other holds.  Fingerprints from the lab's examples (handed to every student) and those most of the cohort share
(what the question makes everyone write) are not evidence and are left out.

A high score is a reason to read both scripts, not a verdict: short questions have few ways to be answered.
"""

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

K = 6                   # tokens per k-gram
W = 4                   # k-grams per winnowing window
THRESHOLD = 0.8         # pairs shown from this share of common fingerprints
MIN_FINGERPRINTS = 4    # a script with fewer (a one-liner) is too short to judge
COMMON_SHARE = 0.5      # a fingerprint in more than this share of a question's scripts is the question's own
MAX_PAIRS = 60          # shown on the dashboard, highest first
SOURCE_CAP = 64 << 10

TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|/\*.*?\*/|//[^\n]*|@\w*|\$\w+|\d+|[A-Za-z_]\w*|->|==|!=|<=|>=|&&|\|\||\S',
                   re.S)


def tokens(source):
    """The script's tokens, normalised: comments dropped, @map -> @, $var -> $, 123 -> 0, "text" -> ""."""
    out = []
    for tok in TOKEN.findall(source[:SOURCE_CAP] if isinstance(source, str) else ""):
        if tok.startswith(("/*", "//")):
            continue
        if tok.startswith('"'):
            tok = '""'
        elif tok.startswith("@"):
            tok = "@"
        elif tok.startswith("$"):
            tok = "$"
        elif tok[0].isdigit():
            tok = "0"
        out.append(tok)
    return out


def fingerprints(source, k=K, w=W):
    """The winnowed set of k-gram hashes of a script (the rightmost smallest hash of each window)."""
    toks = tokens(source)
    grams = [int.from_bytes(hashlib.blake2b(" ".join(toks[i:i + k]).encode(), digest_size=8).digest(), "big")
             for i in range(len(toks) - k + 1)]
    if len(grams) <= w:
        return set(grams)
    chosen = set()
    for i in range(len(grams) - w + 1):
        window = grams[i:i + w]
        low = min(window)
        chosen.add(low)
    return chosen


@dataclass
class Pair:
    question: str
    first: str              # a student
    second: str             # another student, or "" for the lab's reference
    score: float            # share of the smaller script's fingerprints found in the other
    first_source: str
    second_source: str

    @property
    def against_reference(self):
        return not self.second


def _score(a, b):
    return len(a & b) / min(len(a), len(b)) if a and b else 0.0


def sources_of(doc):
    """{question: script source} from a student's evidence document (what ran, as the agent read it)."""
    reply = doc.get("reply") if isinstance(doc, dict) and isinstance(doc.get("reply"), dict) else {}
    return {str(item.get("name")): item["source"][:SOURCE_CAP] for item in reply.get("scripts") or []
            if isinstance(item, dict) and isinstance(item.get("source"), str) and item["source"].strip()}


def _by_question(scripts):
    """{question: {student: source}} from {student: {question: source}}."""
    out = defaultdict(dict)
    for student, by_question in scripts.items():
        for question, source in by_question.items():
            out[question][student] = source
    return out


def _read(path):
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[:SOURCE_CAP]
    except OSError:
        return ""


def compare(scripts, lab, threshold=THRESHOLD):
    """Pairs of scripts at or above ``threshold``, highest first: student with student, and student with the
    lab's reference, per question.  ``scripts``: {student: {question: source}} (sources_of each evidence)."""
    lab_dir = Path(lab.path) if getattr(lab, "path", None) else None
    handed_out = set()
    examples = lab_dir / "examples" if lab_dir else None
    for example in sorted(examples.glob("*.bt")) if examples and examples.is_dir() else []:
        handed_out |= fingerprints(_read(example))
    pairs = []
    for question, sources in sorted(_by_question(scripts).items()):
        prints = {s: fingerprints(src) - handed_out for s, src in sources.items()}
        holders = defaultdict(set)
        for student, fp in prints.items():
            for f in fp:
                holders[f].add(student)
        common = {f for f, who in holders.items() if len(prints) >= 4 and len(who) > COMMON_SHARE * len(prints)}
        reference = _read(lab_dir / "solutions" / ("%s.bt" % question)) if lab_dir else ""
        ref_prints = fingerprints(reference) - handed_out
        shared = defaultdict(int)              # (a, b) -> fingerprints in common, counted through the index
        for f, who in holders.items():
            if f in common or len(who) < 2:
                continue
            ordered = sorted(who)
            for i, a in enumerate(ordered):
                for b in ordered[i + 1:]:
                    shared[(a, b)] += 1
        usable = {s: fp - common for s, fp in prints.items()}
        for (a, b), n in shared.items():
            smaller = min(len(usable[a]), len(usable[b]))
            if smaller >= MIN_FINGERPRINTS and n / smaller >= threshold:
                pairs.append(Pair(question, a, b, n / smaller, sources[a], sources[b]))
        if len(ref_prints) >= MIN_FINGERPRINTS:
            for student, fp in prints.items():
                if len(fp) >= MIN_FINGERPRINTS and _score(fp, ref_prints) >= threshold:
                    pairs.append(Pair(question, student, "", _score(fp, ref_prints), sources[student], reference))
    pairs.sort(key=lambda p: (-p.score, p.question, p.first, p.second))
    return pairs
