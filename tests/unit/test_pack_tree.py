"""roles/grader_access packs the grader on the controller; the same sources must give the same bytes,
whatever the scratch file is called, or every re-provision reports "changed" (seen on a real VM)."""

import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "roles" / "grader_access" / "files" / "pack_tree.py"


def pack(src, dest):
    subprocess.run([sys.executable, str(PACK), str(src), str(dest), "grader"], check=True, timeout=60)
    return dest.read_bytes()


def test_same_sources_same_bytes_under_any_scratch_name(tmp_path):
    a = pack(REPO / "grader", tmp_path / "tmpabc123.tar.gz")
    b = pack(REPO / "grader", tmp_path / "tmpXYZ987.tar.gz")
    assert a == b


def test_a_changed_source_changes_the_bytes_and_caches_are_left_out(tmp_path):
    src = tmp_path / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "__init__.py").write_text("x = 1\n")
    (src / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"junk")
    first = pack(src, tmp_path / "one.tar.gz")
    (src / "__init__.py").write_text("x = 2\n")
    assert pack(src, tmp_path / "two.tar.gz") != first
    with tarfile.open(tmp_path / "two.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["grader", "grader/__init__.py"]
