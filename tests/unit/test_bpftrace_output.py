from grader import bpftrace_output as bo


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
    assert 8 in out.counts() and 5 in out.numbers()


def test_int_keyed_maps_only_when_all_keys_are_ints():
    out = bo.parse('{"type": "map", "data": {"@a": {"3": 1, "4": 1}, "@b": {"x": 1}, "@c": {}}}')
    assert out.int_keyed_maps() == {"@a": {3: 1, 4: 1}}


def test_numbers_ignore_digits_inside_words_and_paths():
    out = bo.parse('{"type": "printf", "data": "kprobeme2 /var/tmp/x5 fd=7 -1\\n"}')
    assert out.ints_by_line() == [[-1]] or out.ints_by_line() == [[7, -1]]
