"""corpus_tools.files: files and folders appear under their final name only once complete."""

import os

import pytest

from corpus_tools.files import atomic_write, is_leftover, replace_dir, temporary_sibling


def test_an_interrupted_write_keeps_the_old_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_the_file_is_not_at_its_name_until_the_block_ends(tmp_path):
    target = tmp_path / "sub" / "a.csv"
    with atomic_write(target, newline="") as f:
        f.write("x,y\r\n")
        assert not target.exists()
        (tmp,) = target.parent.iterdir()
        assert is_leftover(tmp) and not is_leftover(target)
    assert target.read_bytes() == b"x,y\r\n"


def test_text_is_utf8_and_binary_mode_writes_bytes(tmp_path):
    with atomic_write(tmp_path / "t.txt") as f:
        f.write("säästö")
    with atomic_write(tmp_path / "b.bin", "wb") as f:
        f.write(b"\x00\xff")
    assert (tmp_path / "t.txt").read_bytes() == "säästö".encode("utf-8")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"


def test_temporary_siblings_are_hidden_unique_and_beside_the_target(tmp_path):
    a, b = temporary_sibling(tmp_path / "model"), temporary_sibling(tmp_path / "model", "old")
    assert a != b and a.parent == b.parent == tmp_path
    assert a.name.startswith(".model.tmp-") and b.name.startswith(".model.old-")


def test_replace_dir_swaps_in_the_new_build_and_removes_the_old(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    new = temporary_sibling(target)
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_dir(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _race(monkeypatch, target):
    """Another process puts its own build at ``target`` between replace_dir's two renames."""
    real = os.rename

    def rename(src, dst):
        if str(dst) == str(target) and not os.path.exists(dst):
            os.mkdir(dst)
            (target / "theirs.txt").write_text("theirs")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", rename)


def test_a_concurrent_build_is_kept_when_asked(tmp_path, monkeypatch):
    target = tmp_path / "model"
    new = temporary_sibling(target)
    new.mkdir()
    (new / "ours.txt").write_text("ours")
    (new / "more.txt").write_text("ours")  # a non-empty folder cannot replace another by rename
    _race(monkeypatch, target)
    replace_dir(new, target, keep_existing=lambda path: (path / "theirs.txt").is_file())
    assert sorted(p.name for p in target.iterdir()) == ["theirs.txt"]
    assert not new.exists()


def test_a_concurrent_build_is_an_error_otherwise(tmp_path, monkeypatch):
    target = tmp_path / "model"
    new = temporary_sibling(target)
    new.mkdir()
    (new / "ours.txt").write_text("ours")
    _race(monkeypatch, target)
    with pytest.raises(OSError):
        replace_dir(new, target)
    assert new.is_dir()
