from grader import grading


def test_probe_kinds_sees_aliases_and_ignores_comments():
    src = """// kprobe:commented_out { }
    /* kretprobe:also_commented */
    k:do_sys_openat2 { }
    tracepoint:syscalls:sys_enter_close, kr:vfs_read { }
    BEGIN { printf("x:y\\n"); }"""
    kinds = grading.probe_kinds(src)
    assert {"kprobe", "tracepoint", "kretprobe"} <= kinds
    assert grading.probe_kinds("// kprobe:x\ntracepoint:a:b {}") == {"tracepoint"}


def test_diagnose_unsafe_and_compile_error():
    reason, text = grading._diagnose_failure({"exit_code": 1, "stderr": "ERROR: system() is an unsafe function "
                                              "being used in safe mode"}, [])
    assert reason == "unsafe" and "--unsafe" in text
    reason, _ = grading._diagnose_failure({"exit_code": 1, "attached": False, "stderr": "1:5: syntax error"}, [])
    assert reason == "compile_error"
