from grader import bpftrace_output as bo
from simulate import KPROBES


def test_parses_every_record_kind_and_skips_noise():
    text = "\n".join([
        '{"type": "attached_probes", "data": {"probes": 2}}',
        '{"type": "printf", "data": "open /a"}',
        '{"type": "printf", "data": "\\nfd 5\\n"}',
        "",
        "WARNING: something not JSON",
        '{"type": "map", "data": {"@m": {"kprobeme,4": 3, "x,5": 1}}}',
        '{"type": "map", "data": {"@c": 8}}',
        '{"type": "hist", "data": {"@h": [{"min": 0, "max": 1, "count": 2}]}}',
        '{"type": "lost_events", "data": {"events": 7}}',
        '{"type": "something_new", "data": 1}',
        '[1, 2]',
    ])
    out = bo.parse(text)
    assert out.attached_probes == 2
    assert out.lines == ["open /a", "fd 5"]       # printf pieces joined before splitting
    assert out.maps["@c"] == 8 and out.maps["@m"]["x,5"] == 1
    assert out.hists["@h"][0]["count"] == 2
    assert out.lost_events == 7
    assert out.unparsed_lines == 2
    assert "kprobeme,4" in out.texts()
    entries = {(e.map, e.key): e.value for e in out.entries()}
    assert entries[("@m", ("kprobeme", "4"))] == 3 and entries[("@c", ())] == 8
    assert out.entries()[0].int_fields() == [(1, 4)]


def test_multi_key_map_keys_split_into_fields_as_both_versions_print_them():
    """0.17 and 0.23 join tuple keys with commas, strings unquoted (output.cpp: tuple_to_str / str_join)."""
    out = bo.parse('{"type": "map", "data": {"@fds": {"4242,7": 1, "kprobeme, 8": 2}}}')
    assert sorted(e.key for e in out.entries()) == [("4242", "7"), ("kprobeme", "8")]


def test_numbers_ignore_digits_inside_words_and_paths():
    shape_of = KPROBES.reading.shape_of

    shape, ints = shape_of("kprobeme2 /run/bpfhol-lab/12/x5 fd=7 -1")
    assert ints == (7, -1) and shape == "kprobeme2 <path> fd=# #"


def test_excerpt_shows_maps_and_histograms_not_only_printf():
    out = bo.parse("\n".join([
        '{"type": "printf", "data": "tracking\\n"}',
        '{"type": "map", "data": {"@open": {"5": 1, "6": 1}}}',
        '{"type": "map", "data": {"@opens": 12}}',
        '{"type": "hist", "data": {"@fd": [{"min": 5, "max": 5, "count": 3}]}}',
    ]))
    text = out.excerpt()
    assert "tracking" in text and "@open: {5: 1, 6: 1}" in text and "@opens: 12" in text
    assert "@fd (histogram): [5, 5]: 3" in text


def test_digit_runs_beyond_pythons_int_limit_are_numbers_not_errors():
    """int() refuses more than 4300 digits; a student's printf of 5000 ones is a (never returned) number."""
    from grader.bpftrace_output import MAX_NUMBER_DIGITS, number
    shape_of = KPROBES.reading.shape_of

    huge = "1" * 5000
    assert number(huge) == int("1" * MAX_NUMBER_DIGITS) > 2 ** 64
    assert number("-" + huge) < -(2 ** 64) and number("42") == 42 and number("-7") == -7
    shape, ints = shape_of("fd " + huge + " at /tmp/x")
    assert shape == "fd # at <path>" and ints == (number(huge),)
