import os
import stat

import pytest

from mnist_codec import atomic, fileio


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    fileio.write_text(target, "old")

    def killed_mid_write() -> None:
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        killed_mid_write()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temp file left


def test_written_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        fileio.write_text(tmp_path / "a.txt", "x")
        with atomic.atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_dir_swaps_whole_folders(tmp_path):
    target = tmp_path / "models"
    with atomic.atomic_dir(target) as d:
        (d / "a").write_text("1")

    def fails_half_way() -> None:
        with atomic.atomic_dir(target) as d:
            (d / "b").write_text("2")
            raise ValueError("fails half way")

    with pytest.raises(ValueError, match="fails half way"):
        fails_half_way()
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic.atomic_dir(target) as d:
        (d / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_sha256(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert fileio.sha256_file(tmp_path / "f") == fileio.sha256_bytes(b"abc") == expected
