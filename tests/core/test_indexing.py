"""Tests of balanced_sampler.indexing (no framework needed)."""

from __future__ import annotations

import os
import pathlib
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from balanced_sampler.indexing import ALLOWED_FORMATS, IndexingWarning, index_directory

needs_symlinks = pytest.mark.skipif(
    not hasattr(os, "symlink") or sys.platform == "win32", reason="needs POSIX symlinks"
)


def make_tree(root: pathlib.Path, files: list[str]) -> pathlib.Path:
    """Create tiny files at the given relative paths (a trailing '/' makes a folder)."""
    for rel in files:
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    return root


def rel(root: pathlib.Path, paths: list[str]) -> list[str]:
    return [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]


def index_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexingWarning)
        return index_directory(*args, **kwargs)


def test_allowed_formats():
    assert ALLOWED_FORMATS == (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")


def test_basic_inferred_layout(tmp_path):
    make_tree(tmp_path, ["b/2.jpg", "b/1.png", "a/x.gif", "c/z.bmp", "c/y.webp", "c/w.jpeg"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths, labels, names = index_directory(tmp_path)
    assert names == ["a", "b", "c"]
    assert rel(tmp_path, paths) == [
        "a/x.gif",
        "b/1.png",
        "b/2.jpg",
        "c/w.jpeg",
        "c/y.webp",
        "c/z.bmp",
    ]
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 1, 1, 2, 2, 2]
    # Paths are os.path.join(directory, ...) with directory exactly as given.
    assert all(p.startswith(str(tmp_path) + os.sep) for p in paths)


def test_pathlike_and_trailing_separator_give_same_paths(tmp_path):
    make_tree(tmp_path, ["a/1.jpg", "b/2.jpg"])
    as_str = index_directory(str(tmp_path))
    as_path = index_directory(tmp_path)
    trailing = index_directory(str(tmp_path) + os.sep)
    assert as_str[0] == as_path[0] == trailing[0]
    assert as_str[0][0] == os.path.join(str(tmp_path), "a", "1.jpg")


def test_nested_folders_follow_keras_order(tmp_path):
    # Keras sorts the os.walk roots as strings, then names in each root:
    # "b" < "b c" < "b-d" < "b.e" < "b/x" < "b0" in code point order
    # (' ' 0x20 < '-' 0x2d < '.' 0x2e < '/' 0x2f < '0' 0x30).
    make_tree(
        tmp_path,
        [
            "cls/z.jpg",
            "cls/b/x/1.jpg",
            "cls/b/2.jpg",
            "cls/b c/3.jpg",
            "cls/b-d/4.jpg",
            "cls/b.e/5.jpg",
            "cls/b0/6.jpg",
            "cls/a/deep/er/7.jpg",
            "cls/A.jpg",
        ],
    )
    paths, labels, names = index_directory(tmp_path)
    assert names == ["cls"]
    assert rel(tmp_path, paths) == [
        "cls/A.jpg",
        "cls/z.jpg",
        "cls/a/deep/er/7.jpg",
        "cls/b/2.jpg",
        "cls/b c/3.jpg",
        "cls/b-d/4.jpg",
        "cls/b.e/5.jpg",
        "cls/b/x/1.jpg",
        "cls/b0/6.jpg",
    ]
    assert labels.tolist() == [0] * 9


def test_extensions_are_case_insensitive(tmp_path):
    make_tree(tmp_path, ["a/1.JPG", "a/2.Png", "a/3.jPeG", "a/4.WEBP", "a/5.jpg"])
    paths, _, _ = index_directory(tmp_path)
    assert rel(tmp_path, paths) == ["a/1.JPG", "a/2.Png", "a/3.jPeG", "a/4.WEBP", "a/5.jpg"]


def test_formats_are_normalised_to_lower_case(tmp_path):
    make_tree(tmp_path, ["a/1.JPG", "a/2.png"])
    with pytest.warns(IndexingWarning, match="Skipped 1 file"):
        paths, _, _ = index_directory(tmp_path, formats=[".JPG"])
    assert rel(tmp_path, paths) == ["a/1.JPG"]


def test_custom_formats(tmp_path):
    make_tree(tmp_path, ["a/1.tif", "a/2.jpg", "b/3.TIFF"])
    with pytest.warns(IndexingWarning, match="Skipped 1 file"):
        paths, labels, _ = index_directory(tmp_path, formats=(".tif", ".tiff"))
    assert rel(tmp_path, paths) == ["a/1.tif", "b/3.TIFF"]
    assert labels.tolist() == [0, 1]


def test_unsupported_files_one_summary_warning(tmp_path):
    make_tree(
        tmp_path,
        ["a/1.jpg", "a/notes.txt", "a/sub/readme.md", "b/2.jpg", "b/x.tiff", "b/y", "c/3.png"],
    )
    with pytest.warns(IndexingWarning) as record:
        paths, _, _ = index_directory(tmp_path)
    assert rel(tmp_path, paths) == ["a/1.jpg", "b/2.jpg", "c/3.png"]
    skipped = [str(w.message) for w in record if "Skipped" in str(w.message)]
    assert len(skipped) == 1
    assert "Skipped 4 file(s)" in skipped[0]
    assert "notes.txt" in skipped[0]
    assert ".jpg" in skipped[0]  # names the allowed formats
    assert "and 1 more" in skipped[0]  # three examples, then a count


def test_warning_points_at_the_caller(tmp_path):
    make_tree(tmp_path, ["a/1.jpg", "a/notes.txt"])
    with pytest.warns(IndexingWarning) as record:
        index_directory(tmp_path)
    assert record[0].filename == __file__


def test_empty_class_folder_is_kept_and_named_in_a_warning(tmp_path):
    make_tree(tmp_path, ["a/1.jpg", "b_empty/", "c/2.jpg", "d_only_text/x.txt"])
    with pytest.warns(IndexingWarning) as record:
        _, labels, names = index_directory(tmp_path)
    assert names == ["a", "b_empty", "c", "d_only_text"]
    assert labels.tolist() == [0, 2]
    assert np.bincount(labels, minlength=len(names)).tolist() == [1, 0, 1, 0]
    empty = [str(w.message) for w in record if "no samples" in str(w.message)]
    assert len(empty) == 1
    assert "2 class folder(s)" in empty[0]
    assert "'b_empty'" in empty[0]
    assert "'d_only_text'" in empty[0]


def test_top_level_images_are_ignored_with_a_warning(tmp_path):
    make_tree(tmp_path, ["top.jpg", "TOP2.PNG", "readme.txt", "a/1.jpg"])
    with pytest.warns(IndexingWarning, match=r"Ignored 2 image file\(s\) directly inside") as rec:
        paths, labels, names = index_directory(tmp_path)
    assert rel(tmp_path, paths) == ["a/1.jpg"]
    assert names == ["a"]
    assert labels.tolist() == [0]
    # readme.txt at the top level is not data and is not reported as skipped.
    assert not any("readme" in str(w.message) for w in rec)


def test_only_top_level_images_is_an_error_with_a_hint(tmp_path):
    make_tree(tmp_path, ["1.jpg", "2.jpg"])
    with pytest.warns(IndexingWarning), pytest.raises(ValueError, match="No images") as info:
        index_directory(tmp_path)
    message = str(info.value)
    assert "No images found in directory" in message
    assert "no class folder" in message
    assert "2 image(s) lie directly in it" in message
    # Without inferred labels the same files are indexed.
    paths, labels, names = index_directory(tmp_path, labels=None)
    assert rel(tmp_path, paths) == ["1.jpg", "2.jpg"]
    assert labels is None
    assert names is None


def test_hidden_files_included_hidden_class_folders_excluded(tmp_path):
    # As Keras: only class folders starting with "." are skipped; hidden
    # files and hidden sub-folders inside a class are indexed.
    make_tree(
        tmp_path,
        [".hidden_class/1.jpg", "a/.2.jpg", "a/3.jpg", "a/.sub/4.jpg", ".top.jpg"],
    )
    with pytest.warns(IndexingWarning, match="Ignored 1 image"):
        paths, labels, names = index_directory(tmp_path)
    assert names == ["a"]
    assert rel(tmp_path, paths) == ["a/.2.jpg", "a/3.jpg", "a/.sub/4.jpg"]
    assert labels.tolist() == [0, 0, 0]


def test_unicode_and_space_names(tmp_path):
    make_tree(
        tmp_path,
        ["classe é/photo 1.jpg", "classe é/été.PNG", "日本/画像.jpg", "a b/c d/e f.jpeg"],
    )
    paths, labels, names = index_directory(tmp_path)
    assert names == sorted(["classe é", "日本", "a b"])
    assert rel(tmp_path, paths) == [
        "a b/c d/e f.jpeg",
        "classe é/photo 1.jpg",
        "classe é/été.PNG",
        "日本/画像.jpg",
    ]
    assert labels.tolist() == [0, 1, 1, 2]
    assert all(os.path.exists(p) for p in paths)


def test_explicit_labels_follow_sorted_walk_of_all_files(tmp_path):
    make_tree(tmp_path, ["b/1.jpg", "a/2.jpg", "a/sub/3.jpg", "0.jpg", "a/x.txt"])
    with pytest.warns(IndexingWarning, match="Skipped 1 file"):
        paths, labels, names = index_directory(tmp_path, labels=[7, 3, 3, 5])
    # Root first, then "a", "a/sub", "b".
    assert rel(tmp_path, paths) == ["0.jpg", "a/2.jpg", "a/sub/3.jpg", "b/1.jpg"]
    assert labels.dtype == np.int64
    assert labels.tolist() == [7, 3, 3, 5]
    assert names == ["3", "5", "7"]


def test_explicit_labels_as_tuple_and_array(tmp_path):
    make_tree(tmp_path, ["a/1.jpg", "a/2.jpg"])
    _, from_tuple, _ = index_directory(tmp_path, labels=(1, 0))
    _, from_array, names = index_directory(tmp_path, labels=np.array([1, 0], dtype=np.uint8))
    assert from_tuple.tolist() == from_array.tolist() == [1, 0]
    assert from_array.dtype == np.int64
    assert names == ["0", "1"]


def test_explicit_labels_length_mismatch(tmp_path):
    make_tree(tmp_path, ["a/1.jpg", "a/2.jpg", "b/3.jpg"])
    with pytest.raises(ValueError, match=r"len\(labels\) is 2 while we found 3 files"):
        index_directory(tmp_path, labels=[0, 1])


@pytest.mark.parametrize(
    ("labels", "error", "pattern"),
    [
        ([0.0, 1.0], TypeError, "must hold integers"),
        (["a", "b"], TypeError, "must hold integers"),
        ([True, False], TypeError, "must hold integers"),
        ([[0, 1]], ValueError, "one-dimensional"),
        ("classes", ValueError, r"Received: labels='classes'"),
        ({0: 1}, ValueError, r"list/tuple/1-D array"),
        (3, ValueError, r"list/tuple/1-D array"),
    ],
)
def test_bad_labels(tmp_path, labels, error, pattern):
    make_tree(tmp_path, ["a/1.jpg", "a/2.jpg"])
    with pytest.raises(error, match=pattern):
        index_directory(tmp_path, labels=labels)


def test_labels_none_returns_none_labels_and_class_names(tmp_path):
    make_tree(tmp_path, ["b/1.jpg", "a/2.jpg", "3.png"])
    paths, labels, names = index_directory(tmp_path, labels=None)
    assert rel(tmp_path, paths) == ["3.png", "a/2.jpg", "b/1.jpg"]
    assert labels is None
    assert names is None


def test_class_names_set_the_label_ids(tmp_path):
    make_tree(tmp_path, ["a/1.jpg", "b/2.jpg", "c/3.jpg", "c/4.jpg"])
    paths, labels, names = index_directory(tmp_path, class_names=["c", "a", "b"])
    assert names == ["c", "a", "b"]
    # Files come class by class in the given order (as in Keras).
    assert rel(tmp_path, paths) == ["c/3.jpg", "c/4.jpg", "a/1.jpg", "b/2.jpg"]
    assert labels.tolist() == [0, 0, 1, 2]


def test_class_names_mismatch_names_missing_and_extra(tmp_path):
    make_tree(tmp_path, ["a/1.jpg", "b/2.jpg", "c/3.jpg"])
    with pytest.raises(ValueError, match="do not match") as info:
        index_directory(tmp_path, class_names=["a", "b", "zebra"])
    message = str(info.value)
    assert "no folder for ['zebra']" in message
    assert "folders not listed: ['c']" in message
    assert "class_names=['a', 'b', 'zebra']" in message
    # A subset is an error too (Keras would silently index only the subset).
    with pytest.raises(ValueError, match=r"folders not listed: \['c'\]"):
        index_directory(tmp_path, class_names=["a", "b"])


def test_class_names_bad_values(tmp_path):
    make_tree(tmp_path, ["a/1.jpg", "b/2.jpg"])
    with pytest.raises(ValueError, match=r"repeated: \['a'\]"):
        index_directory(tmp_path, class_names=["a", "a", "b"])
    with pytest.raises(TypeError, match="list or tuple"):
        index_directory(tmp_path, class_names="ab")
    with pytest.raises(TypeError, match="non-string entries"):
        index_directory(tmp_path, class_names=["a", 1])


def test_class_names_with_explicit_or_no_labels_is_an_error(tmp_path):
    make_tree(tmp_path, ["a/1.jpg"])
    with pytest.raises(ValueError, match="`class_names` cannot be specified"):
        index_directory(tmp_path, labels=[0], class_names=["a"])
    with pytest.raises(ValueError, match=r"labels=None.*cannot be specified"):
        index_directory(tmp_path, labels=None, class_names=["a"])


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=r"does not exist. Received: directory="):
        index_directory(missing)


def test_directory_is_a_file(tmp_path):
    file = tmp_path / "f.jpg"
    file.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="must be a directory"):
        index_directory(file)


def test_bad_directory_type():
    with pytest.raises(TypeError, match="`directory` must be a path"):
        index_directory(123)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="not bytes"):
        index_directory(b"/tmp")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="must not be empty"):
        index_directory("")


def test_no_images_lists_allowed_formats(tmp_path):
    make_tree(tmp_path, ["a/1.txt", "b/"])
    with pytest.warns(IndexingWarning), pytest.raises(ValueError, match="No images") as info:
        index_directory(tmp_path)
    assert "No images found in directory" in str(info.value)
    assert str(ALLOWED_FORMATS) in str(info.value)


def test_empty_root_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="It has no class folder"):
        index_directory(tmp_path)


@pytest.mark.parametrize(
    ("formats", "error", "pattern"),
    [
        (".jpg", TypeError, "list or tuple"),
        ({".jpg"}, TypeError, "list or tuple"),
        ((), ValueError, "at least one"),
        (("jpg",), ValueError, "starting with a dot"),
        ((".",), ValueError, "starting with a dot"),
        ((".jpg", 3), ValueError, "invalid entry: 3"),
    ],
)
def test_bad_formats(tmp_path, formats, error, pattern):
    make_tree(tmp_path, ["a/1.jpg"])
    with pytest.raises(error, match=pattern):
        index_directory(tmp_path, formats=formats)


@pytest.mark.parametrize(
    ("max_workers", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)],
)
def test_bad_max_workers(tmp_path, max_workers, error):
    make_tree(tmp_path, ["a/1.jpg"])
    with pytest.raises(error, match=r"max_workers.*Received: max_workers="):
        index_directory(tmp_path, max_workers=max_workers)


class CountingName(str):
    """A class name that counts how often it is compared."""

    comparisons = 0

    def __eq__(self, other):
        CountingName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_class_names_checks_are_linear(tmp_path):
    # The duplicate check used list.count per name: n * n comparisons (20k names
    # took 6 s). Linear checks compare each name a bounded number of times.
    n = 3_000
    for i in range(n):
        (tmp_path / f"c{i}").mkdir()
    (tmp_path / "c0" / "x.jpg").write_bytes(b"")
    names = [CountingName(f"c{i}") for i in range(n)]
    CountingName.comparisons = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexingWarning)  # empty class folders
        _, labels, got = index_directory(tmp_path, class_names=names, max_workers=1)
    assert got == names
    assert labels.tolist() == [0]
    assert CountingName.comparisons < 10 * n


def test_bad_follow_links_and_progress(tmp_path):
    make_tree(tmp_path, ["a/1.jpg"])
    with pytest.raises(TypeError, match="follow_links"):
        index_directory(tmp_path, follow_links="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress"):
        index_directory(tmp_path, progress=5)  # type: ignore[arg-type]


def test_result_does_not_depend_on_max_workers(tmp_path):
    files = [f"c{c:03d}/{'sub/' if i % 3 == 0 else ''}{i}.jpg" for c in range(60) for i in range(4)]
    make_tree(tmp_path, files)
    reference = index_directory(tmp_path, max_workers=1)
    assert len(reference[0]) == 240
    for workers in (2, 3, 32):
        paths, labels, names = index_directory(tmp_path, max_workers=workers)
        assert paths == reference[0]
        assert np.array_equal(labels, reference[1])
        assert names == reference[2]


@pytest.mark.parametrize("max_workers", [1, 4])
def test_progress_callback(tmp_path, max_workers):
    make_tree(tmp_path, [f"c{c:02d}/1.jpg" for c in range(50)])
    calls: list[tuple[int, int]] = []
    index_directory(tmp_path, max_workers=max_workers, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (50, 50)
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert {t for _, t in calls} == {50}


def test_progress_callback_without_class_folders(tmp_path):
    make_tree(tmp_path, ["a/1.jpg"])
    calls: list[tuple[int, int]] = []
    index_directory(tmp_path, labels=None, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]


@needs_symlinks
def test_symlinked_class_folder_is_a_class(tmp_path):
    data = make_tree(tmp_path / "data", ["a/1.jpg"])
    make_tree(tmp_path / "elsewhere", ["real_b/2.jpg", "real_b/3.jpg"])
    os.symlink(tmp_path / "elsewhere" / "real_b", data / "b")
    # As Keras: a symlink to a folder at the top is a class even with
    # follow_links=False, and it is walked.
    paths, labels, names = index_directory(data)
    assert names == ["a", "b"]
    assert rel(data, paths) == ["a/1.jpg", "b/2.jpg", "b/3.jpg"]
    assert labels.tolist() == [0, 1, 1]


@needs_symlinks
def test_symlinked_subfolder_needs_follow_links(tmp_path):
    data = make_tree(tmp_path / "data", ["a/1.jpg"])
    make_tree(tmp_path / "elsewhere", ["more/2.jpg"])
    os.symlink(tmp_path / "elsewhere" / "more", data / "a" / "linked")
    with pytest.warns(IndexingWarning, match=r"Did not enter 1 symlinked folder.*follow_links=T"):
        paths, _, _ = index_directory(data)
    assert rel(data, paths) == ["a/1.jpg"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths, _, _ = index_directory(data, follow_links=True)
    assert rel(data, paths) == ["a/1.jpg", "a/linked/2.jpg"]


@needs_symlinks
def test_symlinked_file_is_indexed(tmp_path):
    data = make_tree(tmp_path / "data", ["a/1.jpg"])
    (tmp_path / "outside.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "outside.jpg", data / "a" / "2.jpg")
    os.symlink(tmp_path / "missing.jpg", data / "a" / "3_broken.jpg")
    paths, _, _ = index_directory(data)
    # Keras lists both (os.walk puts links that are not folders with files).
    assert rel(data, paths) == ["a/1.jpg", "a/2.jpg", "a/3_broken.jpg"]


@needs_symlinks
def test_symlink_cycle_terminates_with_follow_links(tmp_path):
    data = make_tree(tmp_path / "data", ["a/1.jpg", "a/sub/2.jpg", "b/3.jpg"])
    os.symlink(data / "a", data / "a" / "sub" / "loop")  # a/sub/loop -> a
    os.symlink(data / "a" / "sub", data / "a" / "sub_again")  # second path to a/sub
    os.symlink(data, data / "b" / "root")  # b/root -> the whole dataset
    # In a thread with a time limit, so that a regression fails instead of hanging.
    with ThreadPoolExecutor(max_workers=1) as pool, warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        future = pool.submit(index_directory, data, follow_links=True)
        paths, labels, names = future.result(timeout=60)
    assert names == ["a", "b"]
    class_a = [p for p, label in zip(paths, labels, strict=True) if label == 0]
    # Each physical file of class a is indexed once, through one path.
    assert sorted(os.path.realpath(p) for p in class_a) == sorted(
        os.path.realpath(data / r) for r in ["a/1.jpg", "a/sub/2.jpg"]
    )
    assert len(class_a) == 2
    # b reaches the whole tree once through b/root (a and b folders included).
    class_b = rel(data, [p for p, label in zip(paths, labels, strict=True) if label == 1])
    assert class_b == ["b/3.jpg", "b/root/a/1.jpg", "b/root/a/sub/2.jpg"]
    # a/sub/loop, a/sub_again; b/root/a/sub/loop, b/root/a/sub_again, b/root/b.
    visited = [str(w.message) for w in record if issubclass(w.category, IndexingWarning)]
    assert len(visited) == 1
    assert "Did not enter 5 folder(s) already walked through another path" in visited[0]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folder_is_reported(tmp_path):
    data = make_tree(tmp_path / "data", ["a/1.jpg", "a/locked/2.jpg"])
    locked = data / "a" / "locked"
    locked.chmod(0)
    try:
        with pytest.warns(IndexingWarning, match=r"Could not read 1 folder"):
            paths, _, _ = index_directory(data)
    finally:
        locked.chmod(0o755)
    assert rel(data, paths) == ["a/1.jpg"]


def test_no_framework_imported():
    import balanced_sampler.indexing as module

    source = pathlib.Path(module.__file__).read_text(encoding="utf-8")
    for name in ("tensorflow", "torch", "keras"):
        assert f"import {name}" not in source
        assert f"from {name}" not in source


def test_unreadable_folder_is_reported_monkeypatched(tmp_path, monkeypatch):
    # Runs as root too: scandir is made to fail on one folder.
    data = make_tree(tmp_path / "data", ["a/1.jpg", "a/locked/2.jpg", "b/3.jpg"])
    locked = str(data / "a" / "locked")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(IndexingWarning, match=r"Could not read 1 folder.*Permission denied"):
        paths, labels, _ = index_directory(data)
    assert rel(data, paths) == ["a/1.jpg", "b/3.jpg"]
    assert labels.tolist() == [0, 1]
