"""Tests for slife/io.py: atomic writes leave the old file or the new one, never half of one, and no temporary."""

import json

import pytest

from slife import io as sio


def test_atomic_writes_replace_and_leave_no_temporary(tmp_path):
    p = tmp_path / "a.json"
    sio.atomic_write_json(p, {"x": 1})
    sio.atomic_write_json(p, {"x": 2}, indent=None)
    assert p.read_text() == '{"x": 2}'
    sio.atomic_write_text(tmp_path / "t.txt", "é\n")
    sio.atomic_write_bytes(tmp_path / "b.bin", b"\0\1")
    assert (tmp_path / "t.txt").read_text() == "é\n" and (tmp_path / "b.bin").read_bytes() == b"\0\1"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.json", "b.bin", "t.txt"]
    assert json.loads(p.read_text()) == {"x": 2}


def test_a_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "fig.png"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with sio.atomic_file(p, keep_suffix=True) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".fig.tmp") and tmp.suffix == ".png"
            tmp.write_bytes(b"half")
            raise RuntimeError("killed half-way")
    assert p.read_bytes() == b"old" and [q.name for q in tmp_path.iterdir()] == ["fig.png"]
    assert sio.tmp_path(tmp_path / "x.tar").name.startswith(".x.tar.tmp")  # hidden, and `.*.tmp*` finds it
