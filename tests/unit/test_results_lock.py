"""Issue 21 item 3: two grader runs on one results folder both graded every student (16 journal lines
for 8 students, the last deciding).  Now the folder is held by one grader (an flock that ends with its
process): a second run exits 2 naming the holder, or with --wait queues behind it.  Also: temp files
a full disk left are removed by the next holder, and a folder that cannot be created is exit 3."""

import subprocess
import sys
import time

from grader import cli
from grader.journal import Journal

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
HOLD = "import sys, time\nfrom grader.journal import Journal\nJournal(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(60)\n"


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _report(folder, *extra):
    return subprocess.Popen([sys.executable, "-m", "grader", "report", "--results", str(folder), *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_grader_on_the_folder_exits_2_naming_the_holder(tmp_path):
    (tmp_path / "journal.jsonl").write_text("")
    holder = _holder(tmp_path)
    try:
        out, err = _report(tmp_path, "--rejudge").communicate(timeout=60)     # a re-judge writes the journal
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "in use by another grader (pid %d on " % holder.pid in lines[0], err
        assert "--wait" in lines[0] and "Traceback" not in err
        # a plain report is read-only beside it: a snapshot's reports, written apart (issue 33 item 3)
        side = _report(tmp_path, "--quiet")
        out, err = side.communicate(timeout=60)
        assert side.returncode == 0 and "in use by a running grade" in err, err
        assert (tmp_path / "snapshot" / "summary.txt").is_file()
    finally:
        holder.kill()
        holder.wait()
    again = _report(tmp_path)            # the holder died: the kernel dropped its lock, nothing stale remains
    again.communicate(timeout=60)
    assert again.returncode == 0


def test_wait_queues_behind_the_holder(tmp_path):
    (tmp_path / "journal.jsonl").write_text("")
    holder = _holder(tmp_path)
    waiting = _report(tmp_path, "--wait")
    time.sleep(3)
    assert waiting.poll() is None                 # still waiting while the folder is held
    holder.kill()
    holder.wait()
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and "waiting for the grader holding" in err, err


def test_one_process_may_open_its_folder_twice_and_release_it(tmp_path):
    a = Journal(tmp_path)
    Journal(tmp_path).load()                      # the same grader: no conflict with itself
    a.release()
    out, err = _report(tmp_path / "x").communicate(timeout=60)   # unrelated folder: unaffected
    assert "in use" not in err


def test_stale_temp_files_are_removed_by_the_next_holder(tmp_path):
    (tmp_path / "students" / "ann").mkdir(parents=True)
    stale = [tmp_path / ".index.html.tmp", tmp_path / "students" / "ann" / ".results.json.tmp"]
    for p in stale:
        p.write_text("half a file")
    keep = tmp_path / "students" / "ann" / "results.json"
    keep.write_text("{}")
    j = Journal(tmp_path)
    assert not any(p.exists() for p in stale) and keep.exists()
    j.release()


def test_a_results_folder_that_cannot_be_created_is_exit_3(tmp_path, capsys):
    (tmp_path / "journal.jsonl").write_text("")
    (tmp_path / "students").write_text("a file where the students folder goes")
    assert cli.main(["report", "--results", str(tmp_path)]) == cli.EXIT_WRITE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be created" in err[0], err
