"""What a careful instructor concludes for each case of scripts (shared by the unit tests on recorded
replies and by the real VM test). Keys: case folder in tests/fixtures/scripts/<lab>/ ("reference" = the
lab's solutions/); values: exercise id -> allowed reasons."""

EXPECTED = {
    "reference": {"q1": {"ok"}, "q2": {"ok"}, "q3": {"ok"}, "q4": {"ok"}},
    # no comm filter / a count instead of descriptors / closes never seen / kernel stacks for q4
    "wrong": {"q1": {"unfiltered"}, "q2": {"no_fds"}, "q3": {"close_path"}, "q4": {"kernel_stack"}},
    # printing the well-known answers (and a function name) without tracing them
    "cheat": {"q1": {"not_found"}, "q2": {"no_fds", "count_mismatch"}, "q3": {"no_leaks"},
              "q4": {"no_stacks"}},
    # syntax error / system() without --unsafe / a probe that cannot attach / ustack("all")
    "broken": {"q1": {"compile_error"}, "q2": {"unsafe"}, "q3": {"attach_failed", "compile_error"},
               "q4": {"compile_error"}},
    # str(arg1) on a user pointer / right answer without a kprobe / right answer / no delete on close
    "empty_path": {"q1": {"empty_path"}, "q2": {"wrong_probe_type"}, "q3": {"ok"}, "q4": {"not_deleted"}},
    # correct answers written differently (tests/unit/test_answer_variants.py): every one passes
    "variants_a": {"q1": {"ok"}, "q2": {"ok"}, "q3": {"ok"}, "q4": {"ok"}},
    "variants_b": {"q1": {"ok"}, "q2": {"ok"}, "q3": {"ok"}, "q4": {"ok"}},
    "variants_c": {"q1": {"ok"}, "q2": {"ok"}, "q3": {"ok"}, "q4": {"ok"}},
    "variants_d": {"q1": {"ok"}, "q2": {"ok"}, "q3": {"ok"}, "q4": {"ok"}},
    "variants_e": {"q1": {"ok"}, "q2": {"ok"}, "q3": {"ok"}, "q4": {"ok"}},
    # printing numbers that do not depend on the run: every path / 0..99 on every line / 0..99 "leaked" / 0..99 -> one function
    "cheat_shotgun": {"q1": {"unfiltered"}, "q2": {"count_mismatch", "too_many_numbers", "no_fds"}, "q3": {"no_leaks"},
                      "q4": {"not_deleted", "wrong_fds"}},
}

# The uprobes lab (tests/fixtures/scripts/uprobes/<case>/u*.bt; the VM test and the loopback test both grade them).
EXPECTED_UPROBES = {
    "reference": {"u1": {"ok"}, "u2": {"ok"}, "u3": {"ok"}, "u4": {"ok"}},
    # the other field for u1/u2 / a made-up histogram / the jobs' own stacks instead of strtol's (no probe on it)
    "wrong": {"u1": {"other_field"}, "u2": {"other_field"}, "u3": {"wrong_total", "wrong_split"},
              "u4": {"not_probed"}},
    # constants printed in END beside probes that only count
    "cheat": {"u1": {"not_found"}, "u2": {"not_found", "partial"}, "u3": {"wrong_total", "wrong_split"},
              "u4": {"wrong_counts", "non_parser"}},
    # correct answers written differently: multi-key maps, nanoseconds keyed by comm, ustack(4) with comm
    "variants": {"u1": {"ok"}, "u2": {"ok"}, "u3": {"ok"}, "u4": {"ok"}},
    # issue 32's forms: a map keyed by the order id holding each order's qty (not counts), a map keyed by the price
    # holding its order id, a line per call with its sequence number and a decimal ms ("call 17 took 39.417 ms"),
    # ustack(3) in a named map
    "variants_b": {"u1": {"ok"}, "u2": {"ok"}, "u3": {"ok"}, "u4": {"ok"}},
}
