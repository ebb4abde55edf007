"""Writes that survive a crash: the whole file or the old one, never a temporary left behind."""

import pytest

from edge.durable import fsync_directory, write_atomically, write_durably


def test_a_file_replaced_atomically_holds_the_new_bytes_and_nothing_is_left_aside(tmp_path):
    path = tmp_path / "current.json"
    write_durably(path, b"old")
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.json"]


def test_fsyncing_a_directory_that_is_not_there_says_so(tmp_path):
    fsync_directory(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_directory(tmp_path / "missing")
