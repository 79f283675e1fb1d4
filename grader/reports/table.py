"""The terminal table an instructor reads first."""

from . import clean


def render(results, lab):
    ids = [ex.id for ex in lab.exercises]
    width = max([len(clean(r.student, 40)) for r in results] + [7])
    lines = ["%-*s  %-7s %s  %s" % (width, "student", "score", " ".join("%-4s" % i for i in ids), "note")]
    for r in results:
        name = clean(r.student, 40)
        if r.status != "graded":
            note = clean(r.error, 120).replace("\n", " ")
            lines.append("%-*s  %-7s %s  %s" % (width, name, "-", " ".join("%-4s" % "-" for _ in ids),
                                                note if r.status == "not_graded" else "not gradable: " + note))
            continue
        by_id = {e.id: e for e in r.exercises}
        marks = " ".join("%-4s" % ("ok" if by_id.get(i) and by_id[i].passed else "FAIL" if i in by_id else "-")
                         for i in ids)
        lines.append("%-*s  %-7s %s" % (width, name, "%g/%g" % (r.score, lab.max_score), marks))
    graded = [r for r in results if r.status == "graded"]
    waiting = [r for r in results if r.status == "not_graded"]
    lines.append("%d students: %d graded, %d not gradable%s" % (
        len(results), len(graded), len(results) - len(graded) - len(waiting),
        ", %d not graded yet" % len(waiting) if waiting else ""))
    own = sum(1 for r in graded if getattr(r, "mode", "") == "self-check")
    if own:
        lines.append("%d of them graded on their own VM, where they are root: a self-check, not a grade to sign "
                     "(grades that count: grade ROSTER --pool VMS)" % own)
    return "\n".join(lines) + "\n"
