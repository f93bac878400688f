"""The framework-free part of the decoded cache: argument, dtype, size, memory check."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from balanced_sampler.decoded_cache import (
    IN_RANGE_INTERPOLATIONS,
    OVERSHOOTING_INTERPOLATIONS,
    CacheLayout,
    available_memory,
    cache_layout,
    check_cache,
    check_fits_in_memory,
    format_bytes,
    storage_dtype,
)


def test_check_cache_accepts_none_memory_and_file_paths(tmp_path):
    assert check_cache(None) is None
    assert check_cache("memory") == "memory"
    assert check_cache(str(tmp_path / "train.kgcache")) == str(tmp_path / "train.kgcache")
    assert check_cache(tmp_path / "train.kgcache") == str(tmp_path / "train.kgcache")
    assert check_cache("./memory") == "./memory"  # a file named memory


@pytest.mark.parametrize("bad", [True, 1, 2.5, ["memory"], b"memory"])
def test_check_cache_rejects_other_types_naming_the_value(bad):
    with pytest.raises(TypeError, match=r'`cache` must be None, "memory" or the path'):
        check_cache(bad)
    with pytest.raises(TypeError, match=r"Received: cache="):
        check_cache(bad)


def test_check_cache_rejects_empty_string_folders_and_missing_folders(tmp_path):
    with pytest.raises(ValueError, match=r"empty string.*Received: cache=''"):
        check_cache("")
    with pytest.raises(IsADirectoryError, match="not of a folder"):
        check_cache(tmp_path)
    missing = tmp_path / "no" / "such" / "train.kgcache"
    with pytest.raises(FileNotFoundError, match="folder of the cache file does not exist"):
        check_cache(missing)


def test_storage_dtype_is_uint8_where_resizing_stays_in_range():
    for method in IN_RANGE_INTERPOLATIONS:
        assert storage_dtype(method) == "uint8"
    for method in OVERSHOOTING_INTERPOLATIONS:
        assert storage_dtype(method) == "float16"
    with pytest.raises(ValueError, match="interpolation='cubic'"):
        storage_dtype("cubic")


def test_layout_counts_n_h_w_c_bytes():
    layout = cache_layout(600, (128, 128, 3), "bilinear")
    assert layout == CacheLayout(600, (128, 128, 3), "uint8")
    assert layout.row_nbytes == 128 * 128 * 3
    assert layout.nbytes == 600 * 128 * 128 * 3
    assert layout.describe() == "600 images of 128x128x3 uint8 = 29.5 MB"
    half = cache_layout(10, (3, 8, 8), "lanczos3")
    assert half.nbytes == 10 * 3 * 8 * 8 * 2
    assert CacheLayout(0, (1, 1, 1), "float32").nbytes == 0


def test_layout_rejects_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match="positive sizes"):
        CacheLayout(5, (0, 4, 3), "uint8")
    with pytest.raises(ValueError, match="'dtype' must be in"):
        CacheLayout(5, (4, 4, 3), "int8")
    with pytest.raises(ValueError, match="'num_images' must be >= 0"):
        CacheLayout(-1, (4, 4, 3), "uint8")


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (999, "999 bytes"),
        (1000, "1 kB"),
        (29_491_200, "29.5 MB"),
        (301_056_000, "301 MB"),
        (15_052_800_000, "15.1 GB"),
        (999_600, "1 MB"),
    ],
)
def test_format_bytes(size, text):
    assert format_bytes(size) == text


def _fake_system(tmp_path: pathlib.Path, meminfo_kb: int | None, cgroup: dict[str, str]):
    tmp_path.mkdir(parents=True, exist_ok=True)
    meminfo = tmp_path / "meminfo"
    if meminfo_kb is not None:
        meminfo.write_text(
            f"MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   {meminfo_kb} kB\n"
        )
    root = tmp_path / "cgroup"
    for name, value in cgroup.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(value + "\n")
    return str(meminfo), str(root)


def test_available_memory_reads_meminfo(tmp_path):
    meminfo, root = _fake_system(tmp_path, 2_000_000, {})
    assert available_memory(meminfo, root) == 2_000_000 * 1024


def test_available_memory_respects_a_cgroup_v2_limit(tmp_path):
    meminfo, root = _fake_system(
        tmp_path, 8_000_000, {"memory.max": str(3 * 2**30), "memory.current": str(2**30)}
    )
    assert available_memory(meminfo, root) == 2 * 2**30
    meminfo, root = _fake_system(
        tmp_path / "x", 8_000_000, {"memory.max": "max", "memory.current": "5"}
    )
    assert available_memory(meminfo, root) == 8_000_000 * 1024


def test_available_memory_respects_a_cgroup_v1_limit(tmp_path):
    meminfo, root = _fake_system(
        tmp_path,
        8_000_000,
        {
            "memory/memory.limit_in_bytes": str(2**30),
            "memory/memory.usage_in_bytes": str(2**29),
        },
    )
    assert available_memory(meminfo, root) == 2**29
    unlimited = {
        "memory/memory.limit_in_bytes": str(2**63 - 4096),
        "memory/memory.usage_in_bytes": "10",
    }
    meminfo, root = _fake_system(tmp_path / "u", 8_000_000, unlimited)
    assert available_memory(meminfo, root) == 8_000_000 * 1024


def test_available_memory_of_this_machine_is_plausible():
    available = available_memory()
    if available is not None:
        assert 0 < available < 2**50


def test_check_fits_in_memory_names_the_sizes_and_the_way_out():
    layout = CacheLayout(100_000, (224, 224, 3), "uint8")
    check_fits_in_memory(layout, available=layout.nbytes)  # exactly fits
    with pytest.raises(MemoryError) as error:
        check_fits_in_memory(layout, available=8 * 10**9)
    message = str(error.value)
    assert "15.1 GB" in message
    assert "100,000 images of 224x224x3 uint8" in message
    assert "8 GB of memory is available" in message
    assert "path of a cache file" in message
    assert "smaller `image_size`" in message


def test_check_fits_in_memory_reads_the_machine_by_default(monkeypatch):
    import balanced_sampler.decoded_cache as module

    monkeypatch.setattr(module, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match="1 kB of memory is available"):
        check_fits_in_memory(CacheLayout(10, (10, 10, 3), "uint8"))
    monkeypatch.setattr(module, "available_memory", lambda: None)
    check_fits_in_memory(CacheLayout(10**6, (100, 100, 3), "uint8"))  # unknown: no check


def test_importing_the_cache_modules_imports_no_framework():
    code = (
        "import sys, balanced_sampler.cache_file, balanced_sampler.decoded_cache; "
        "print(sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
