"""JUnit XML: one testsuite per student, one testcase per exercise, for CI dashboards."""

from xml.sax.saxutils import quoteattr, escape

from . import clean


def render(results, lab):
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<testsuites name=%s>' % quoteattr("bpfhol " + lab.name)]
    for r in results:
        name = quoteattr(clean(r.student, 200))
        if r.status != "graded":
            out.append('<testsuite name=%s tests="1" failures="0" errors="1">' % name)
            out.append('<testcase classname=%s name="gradable"><error message=%s/></testcase>'
                       % (name, quoteattr(clean(r.error, 500))))
        else:
            failures = sum(1 for e in r.exercises if not e.passed)
            out.append('<testsuite name=%s tests="%d" failures="%d" errors="0">' % (name, len(r.exercises), failures))
            for e in r.exercises:
                out.append('<testcase classname=%s name=%s>' % (name, quoteattr(clean(e.id, 100))))
                if not e.passed:
                    out.append('<failure message=%s>%s</failure>'
                               % (quoteattr(clean(e.reason, 100)), escape(clean(e.feedback))))
                out.append('</testcase>')
        out.append('</testsuite>')
    out.append('</testsuites>')
    return "\n".join(out) + "\n"
