"""The decoded cache on disk: reuse, rebuild, killed writers, two processes (real ones)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from balanced_sampler.cache_file import CacheFile, cache_key, file_signatures
from balanced_sampler.decoded_cache import CacheLayout, DecodedCacheWarning

WORKER = Path(__file__).parent / "scripts" / "cache_file_worker.py"
LAYOUT = CacheLayout(10, (4, 5, 3), "uint8")


def rows(values):
    index = np.array(list(values), dtype=np.int64)
    images = np.broadcast_to(
        (index + 1).astype(np.uint8)[:, None, None, None], (len(index), 4, 5, 3)
    )
    return index, images


def start_worker(path, mode):
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    role = process.stdout.readline().strip()
    assert role, process.stderr.read()
    return process, role


def test_rows_written_and_committed_are_reused_by_the_next_run(tmp_path):
    path = tmp_path / "train.kgcache"
    with CacheFile.open(path, LAYOUT, "key-1") as store:
        assert store.role == "writer"
        assert store.num_filled == 0
        store.write(*rows([3, 1, 3]))  # repeats are fine
        assert store.filled.tolist() == [False, True, False, True] + [False] * 6
        np.testing.assert_array_equal(store.read([1, 3])[:, 0, 0, 0], [2, 4])
    assert os.path.getsize(path) == 4096 + LAYOUT.nbytes + 10
    with CacheFile.open(path, LAYOUT, "key-1") as again:
        assert again.filled.tolist() == [False, True, False, True] + [False] * 6
        np.testing.assert_array_equal(again.read([3])[0], np.full((4, 5, 3), 4, np.uint8))
        again.write(*rows(range(10)))
        assert again.complete
    with CacheFile.open(path, LAYOUT, "key-1") as complete:
        assert complete.complete
        np.testing.assert_array_equal(complete.read(range(10))[:, 2, 3, 1], np.arange(1, 11))


def test_a_writer_killed_mid_fill_leaves_only_committed_rows_trusted(tmp_path):
    path = tmp_path / "train.kgcache"
    process, role = start_worker(path, "killed")
    assert role == "writer"
    process.wait(timeout=60)
    assert process.returncode == -9
    with CacheFile.open(path, LAYOUT, "key-1") as store:
        assert store.role == "writer"  # the lock died with the process
        assert store.filled.tolist() == [True] * 4 + [False] * 6
        np.testing.assert_array_equal(store.read(range(4))[:, 0, 0, 0], [1, 2, 3, 4])
        with pytest.raises(ValueError, match=r"Rows \[4\] of the cache are not filled"):
            store.read([4])


def test_a_second_process_fills_a_private_cache_while_the_first_writes(tmp_path):
    path = tmp_path / "train.kgcache"
    process, role = start_worker(path, "hold")
    try:
        assert role == "writer"
        with pytest.warns(
            DecodedCacheWarning, match=rf"being filled by another process \(pid {process.pid}\)"
        ):
            mine = CacheFile.open(path, LAYOUT, "key-1")
        assert mine.role == "private"
        assert mine.num_filled == 0  # it trusts nothing of a file still being filled
        index, _ = rows([7])
        mine.write(index, np.full((1, 4, 5, 3), 200, np.uint8))
        assert mine.read([7])[0, 0, 0, 0] == 200
        leftovers = [p.name for p in tmp_path.iterdir()]
        assert sorted(leftovers) == [
            "train.kgcache",
            "train.kgcache.lock",
        ]  # the private file is unlinked
    finally:
        out, err = process.communicate("go\n", timeout=60)
    assert out.strip() == "done", err
    mine.close()
    with CacheFile.open(
        path, LAYOUT, "key-1"
    ) as store:  # the next run: writer again, rows of the first
        assert store.role == "writer"
        assert store.complete
        np.testing.assert_array_equal(store.read(range(10))[:, 0, 0, 0], np.arange(1, 11))


def test_a_second_process_reads_a_complete_file_without_the_lock(tmp_path):
    path = tmp_path / "train.kgcache"
    process, role = start_worker(path, "complete-hold")
    try:
        assert role == "writer"
        with CacheFile.open(path, LAYOUT, "key-1") as store:
            assert store.role == "reader"
            assert store.complete
            np.testing.assert_array_equal(store.read([9, 0])[:, 1, 1, 1], [10, 1])
            with pytest.raises(ValueError, match="read-only"):
                store.write(*rows([2]))
    finally:
        process.communicate("go\n", timeout=60)


def test_changed_files_or_options_rebuild_the_file(tmp_path):
    path = tmp_path / "train.kgcache"
    with CacheFile.open(path, LAYOUT, "key-1", description={"files": 10}) as store:
        store.write(*rows(range(10)))
    with pytest.warns(
        DecodedCacheWarning,
        match=r"built for other files or image options \(\{'files': 10\}\); rebuilding",
    ):
        store = CacheFile.open(path, LAYOUT, "key-2")
    with store:
        assert store.role == "writer"
        assert store.num_filled == 0
    other = CacheLayout(10, (4, 5, 1), "uint8")
    with pytest.warns(DecodedCacheWarning, match="rebuilding"):
        store = CacheFile.open(path, other, "key-2")
    with store:
        assert store.num_filled == 0
        assert store.layout == other


def test_a_file_that_is_not_a_cache_is_never_overwritten(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(FileExistsError, match="is not a kerasgen cache file; it is left untouched"):
        CacheFile.open(path, LAYOUT, "key-1")
    assert path.read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]  # nothing created
    with CacheFile.open(path.with_suffix(".kgcache"), LAYOUT, "key-1") as store:
        assert store.role == "writer"


def test_files_left_by_a_writer_killed_while_creating_are_removed(tmp_path):
    path = tmp_path / "train.kgcache"
    leftover = tmp_path / "train.kgcache.4242.deadbeef.new"
    leftover.write_bytes(b"partial")
    with CacheFile.open(path, LAYOUT, "key-1"):
        pass
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.kgcache", "train.kgcache.lock"]


def test_one_process_opening_a_path_twice_shares_or_goes_private(tmp_path):
    path = tmp_path / "train.kgcache"
    first = CacheFile.open(path, LAYOUT, "key-1")
    assert CacheFile.open(str(path), LAYOUT, "key-1") is first
    with pytest.warns(DecodedCacheWarning, match="already open in this process"):
        other = CacheFile.open(path, LAYOUT, "key-2")
    assert other.role == "private"
    other.close()
    first.close()
    with pytest.raises(ValueError, match="is closed"):
        first.read([0])
    reopened = CacheFile.open(path, LAYOUT, "key-1")
    assert reopened is not first
    reopened.close()


def test_writes_from_many_threads_land_in_their_rows(tmp_path):
    layout = CacheLayout(400, (8, 8, 3), "float16")
    with CacheFile.open(tmp_path / "c.kgcache", layout, "k", commit_interval=0.01) as store:

        def work(start):
            index = np.arange(start, 400, 8)
            store.write(
                index, np.broadcast_to(index[:, None, None, None] / 4, (len(index), 8, 8, 3))
            )
            store.read(index)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.complete
        np.testing.assert_array_equal(store.read(range(400))[:, 3, 3, 2], np.arange(400) / 4)
    with CacheFile.open(tmp_path / "c.kgcache", layout, "k") as again:
        assert again.complete


def test_bad_rows_and_shapes_are_reported(tmp_path):
    with CacheFile.open(tmp_path / "c.kgcache", LAYOUT, "k") as store:
        with pytest.raises(ValueError, match=r"Expected images of shape \(2, 4, 5, 3\)"):
            store.write([0, 1], np.zeros((2, 4, 5, 1), np.uint8))
        with pytest.raises(ValueError, match=r"Rows \[0, 1\] of the cache are not filled"):
            store.read([0, 1])
        assert "role='writer', filled=0/10" in repr(store)


def test_no_room_on_disk_is_a_clear_error_before_writing(tmp_path, monkeypatch):
    import balanced_sampler.cache_file as module

    monkeypatch.setattr(
        module.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**6, 0, 1000)
    )
    with pytest.raises(OSError, match=r"needs 4.71 kB but only 1 kB is free") as error:
        CacheFile.open(tmp_path / "c.kgcache", LAYOUT, "k")
    assert error.value.errno == errno.ENOSPC
    assert not (tmp_path / "c.kgcache").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c.kgcache.lock"]


def test_the_key_changes_with_every_input(tmp_path):
    files = []
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"x" * 10)
        files.append(str(tmp_path / name))
    options = {"image_size": [8, 8], "interpolation": "bilinear"}
    key = cache_key(files, LAYOUT, options)
    assert cache_key(files, LAYOUT, options) == key
    assert cache_key(files[::-1], LAYOUT, options) != key
    assert cache_key(files, LAYOUT, {**options, "interpolation": "area"}) != key
    assert cache_key(files, CacheLayout(10, (4, 5, 3), "float16"), options) != key
    (tmp_path / "a.png").write_bytes(b"x" * 11)
    assert cache_key(files, LAYOUT, options) != key
    stat = os.stat(files[1])
    os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    key2 = cache_key(files, LAYOUT, options)
    os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache_key(files, LAYOUT, options) != key2
    assert file_signatures([str(tmp_path / "missing.png")]) == [(-1, -1)]
