#!/usr/bin/env python3
"""Pack a source tree into a reproducible .tar.gz (runs on the Ansible controller).

    pack_tree.py SRC_DIR DEST.tar.gz NAME

Members are sorted, owned by root, dated 0, without __pycache__/*.pyc/dot files, so the
same sources give the same bytes and Ansible's copy reports "changed" only for real changes.
"""
import gzip
import io
import os
import sys
import tarfile


def skip(name):
    return name.startswith(".") or name == "__pycache__" or name.endswith((".pyc", ".pyo"))


def pack(src, dest, top):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if not skip(d))
            rel = os.path.relpath(root, src)
            for name in [None] + sorted(f for f in files if not skip(f)):
                path = root if name is None else os.path.join(root, name)
                arc = os.path.normpath(os.path.join(top, rel, name or ""))
                info = tar.gettarinfo(path, arcname=arc)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
                if info.isfile():
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                elif info.isdir():
                    tar.addfile(info)
    with open(dest, "wb") as out, gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())


if __name__ == "__main__":
    if len(sys.argv) != 4 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: pack_tree.py SRC_DIR DEST.tar.gz NAME")
    pack(sys.argv[1], sys.argv[2], sys.argv[3])
