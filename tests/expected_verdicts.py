"""What a careful instructor concludes for each case of scripts (shared by the unit tests on recorded
replies and by the real VM test). Keys: case folder in tests/fixtures/scripts/<lab>/ ("reference" = the
lab's solutions/); values: exercise id -> allowed reasons."""

EXPECTED = {
    "reference": {"q1": {"ok"}, "q2": {"ok"}, "q3": {"ok"}},
    # no comm filter / a count instead of descriptors / closes never seen
    "wrong": {"q1": {"unfiltered"}, "q2": {"no_fds"}, "q3": {"close_path"}},
    # printing the well-known answers without tracing them
    "cheat": {"q1": {"not_found"}, "q2": {"no_fds", "count_mismatch"}, "q3": {"no_leaks"}},
    # syntax error / system() without --unsafe / a probe that cannot attach
    "broken": {"q1": {"compile_error"}, "q2": {"unsafe"}, "q3": {"attach_failed", "compile_error"}},
    # str(arg1) on a user pointer / right answer without a kprobe / right answer
    "empty_path": {"q1": {"empty_path"}, "q2": {"wrong_probe_type"}, "q3": {"ok"}},
}
