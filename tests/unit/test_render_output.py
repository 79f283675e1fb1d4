"""The student pages' rendering of `bpftrace -f json` output as bpftrace 0.17 prints it in a terminal.  The
expected texts are bpftrace 0.17's own output for the same program (run on this host with and without -f json:
BEGIN { @h = hist(...); @l = lhist(..., 0, 10, 2); @m[1, "a"] = 3; @s = stats(...); ... })."""

import json

from grader.reports.render_output import readable, render


def lines(*records):
    return "".join(json.dumps(r) + "\n" for r in records)


HIST = [{"min": 0, "max": 0, "count": 1}, {"min": 1, "max": 1, "count": 0}, {"min": 2, "max": 3, "count": 0},
        {"min": 4, "max": 7, "count": 1}, {"min": 8, "max": 15, "count": 0}, {"min": 16, "max": 31, "count": 0},
        {"min": 32, "max": 63, "count": 0}, {"min": 64, "max": 127, "count": 1}, {"min": 128, "max": 255, "count": 0},
        {"min": 256, "max": 511, "count": 0}, {"min": 512, "max": 1023, "count": 0},
        {"min": 1024, "max": 2047, "count": 0}, {"min": 2048, "max": 4095, "count": 1}]
# bpftrace 0.17's text output of the same histogram (hist(0), hist(5), hist(100), hist(3000))
HIST_TEXT = """\
@h:
[0]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[1]                    0 |                                                    |
[2, 4)                 0 |                                                    |
[4, 8)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[8, 16)                0 |                                                    |
[16, 32)               0 |                                                    |
[32, 64)               0 |                                                    |
[64, 128)              1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[128, 256)             0 |                                                    |
[256, 512)             0 |                                                    |
[512, 1K)              0 |                                                    |
[1K, 2K)               0 |                                                    |
[2K, 4K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
"""
LHIST = [{"max": -1, "count": 1}, {"min": 0, "max": 1, "count": 0}, {"min": 2, "max": 3, "count": 1},
         {"min": 4, "max": 5, "count": 0}, {"min": 6, "max": 7, "count": 0}, {"min": 8, "max": 9, "count": 0},
         {"min": 10, "count": 1}]
LHIST_TEXT = """\
@l:
(..., 0)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[0, 2)                 0 |                                                    |
[2, 4)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[4, 6)                 0 |                                                    |
[6, 8)                 0 |                                                    |
[8, 10)                0 |                                                    |
[10, ...)              1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
"""


def test_histograms_print_with_their_labels_and_bars_as_bpftrace_does():
    text = render(lines({"type": "hist", "data": {"@h": HIST}}, {"type": "hist", "data": {"@l": LHIST}}))
    assert text == HIST_TEXT + "\n" + LHIST_TEXT


def test_bars_scale_to_the_largest_bucket_and_keyed_histograms_print_one_per_key():
    text = render(lines({"type": "hist", "data": {"@lat": {"read": [{"min": 4, "max": 7, "count": 4},
                                                                      {"min": 8, "max": 15, "count": 1}]}}}))
    assert text.splitlines() == ["@lat[read]:", "[4, 8)                 4 |%s|" % ("@" * 52),
                                 "[8, 16)                1 |%s%s|" % ("@" * 13, " " * 39)]


def test_maps_stats_and_printf_print_as_bpftrace_does():
    text = render(lines(
        {"type": "attached_probes", "data": {"probes": 2}},
        {"type": "printf", "data": "open "}, {"type": "printf", "data": "/etc/x\n"},
        {"type": "map", "data": {"@m": {"1,a": 3, "2,bb": 5}}},
        {"type": "map", "data": {"@c": 7}},
        {"type": "stats", "data": {"@s": {"count": 2, "average": 6, "total": 12}}},
        {"type": "stats", "data": {"@a": 4}},
        {"type": "map", "data": {"@str": {"x": "hello"}}},
        {"type": "lost_events", "data": {"events": 3}}) + "WARNING: not JSON\n")
    assert text.splitlines() == ["Attaching 2 probes...", "open /etc/x", "@m[1, a]: 3", "@m[2, bb]: 5", "@c: 7",
                                 "@s: count 2, average 6, total 12", "@a: 4", "@str[x]: hello", "Lost 3 events",
                                 "WARNING: not JSON"]


def test_stacks_print_one_frame_a_line_as_keys_and_as_values():
    kstack = "\n    perf_syscall_enter+475\n    do_syscall_64+527\n"
    text = render(lines({"type": "map", "data": {"@k": {kstack + ",7336": 3}}},
                        {"type": "map", "data": {"@opened_by": {"5472,24": "\n        syscall+25\n        main+3075\n"}}}))
    assert text == ("@k[\n    perf_syscall_enter+475\n    do_syscall_64+527\n, 7336]: 3\n"
                    "@opened_by[5472, 24]: \n        syscall+25\n        main+3075\n")


def test_a_huge_map_is_summarised_and_odd_records_do_not_break_it():
    big = {str(i): i for i in range(2000)}
    text = render(lines({"type": "map", "data": {"@big": big}}, {"type": "hist", "data": {"@h": "nonsense"}},
                        {"type": "hist", "data": {"@z": [{"min": 0, "max": 0, "count": 0}]}}, [1, 2]))
    assert text.count("@big[") == 500 and "1500 more entries of @big" in text
    assert "@h:" in text and "[0]                    0 |%s|" % (" " * 52) in text and "[1, 2]" in text
    assert render(None) == "" and render("") == ""


def test_readable_values_are_words_not_python_reprs():
    assert readable(False) == "no" and readable(True) == "yes" and readable(None) == "-"
    assert readable(["SIGINT", "SIGKILL"]) == "SIGINT, SIGKILL" and readable([]) == "none"
    assert readable({"args": ["--jobs", 3], "quiet": False}) == "args: --jobs, 3; quiet: no"
