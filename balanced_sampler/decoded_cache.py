"""What a decoded-image cache holds, how large it is, and whether it fits.

The TensorFlow adapter can keep every image it decodes, after decoding and
resizing, in a per-sample cache, so that epochs after the first gather
their planned batches from memory instead of decoding files again (see
`kerasgen_tf.decoded_cache`). This module holds the framework-free part
that `kerasgen inspect` also uses without TensorFlow:

- `check_cache`: the `cache` argument (None, "memory" or a file path);
- `storage_dtype`: uint8 where the resized pixels stay within 0..255 (every
  value within 0.5 of the float32 image), float16 where the resizing
  kernel overshoots (within 0.125 of it);
- `CacheLayout` / `cache_layout`: N x H x W x C x bytes per value;
- `available_memory` and `check_fits_in_memory`: the size check made
  before any image is stored.

Storage dtype. Keras' resizing returns float32 values. With "bilinear",
"nearest", "area" and "gaussian" (convex combinations of the input pixels)
they stay within 0..255, so the cache stores them as uint8, rounded to the
nearest integer: a quarter of the memory of float32, every value within
0.5 of the uncached one ("nearest" gives integers, so it is exact). The
other kernels ("bicubic", "lanczos3", "lanczos5", "mitchellcubic") have
negative lobes and overshoot (measured -208..465 on a black and white
checkerboard), which uint8 would clip; they are stored as float16 (half
the memory of float32, within 0.125 of the uncached value for |v| < 512).
Every epoch, the first included, yields the stored values, so all epochs
see identical pixels.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import attrs

__all__ = [
    "IN_RANGE_INTERPOLATIONS",
    "MEMORY",
    "OVERSHOOTING_INTERPOLATIONS",
    "CacheLayout",
    "DecodedCacheWarning",
    "available_memory",
    "cache_layout",
    "check_cache",
    "check_fits_in_memory",
    "format_bytes",
    "storage_dtype",
]

MEMORY = "memory"
"""The `cache` value that keeps the decoded images in memory."""

IN_RANGE_INTERPOLATIONS = ("bilinear", "nearest", "area", "gaussian")
"""Resizing methods whose output stays within the input range (stored as uint8)."""

OVERSHOOTING_INTERPOLATIONS = ("bicubic", "lanczos3", "lanczos5", "mitchellcubic")
"""Resizing methods whose kernels overshoot the input range (stored as float16)."""

_BYTES_PER_VALUE = {"uint8": 1, "float16": 2, "float32": 4}


class DecodedCacheWarning(UserWarning):
    """Warns about a decoded cache file that is rebuilt or cannot be shared.

    Silence it with
    `warnings.filterwarnings("ignore", category=DecodedCacheWarning)`.
    """


def check_cache(cache: object) -> str | None:
    """Validates the `cache` argument of the dataset builders.

    Args:
        cache: None (no cache), "memory" (decoded images kept in memory) or
            the path of a cache file (str or os.PathLike); its folder must
            exist. To name a file "memory" in the working directory, pass
            "./memory".

    Returns:
        None, "memory" or the path as a string.

    Raises:
        TypeError: If `cache` is not None, a str or an os.PathLike.
        ValueError: If `cache` is an empty string.
        FileNotFoundError: If the folder of the cache file does not exist.
        IsADirectoryError: If the path is an existing folder.
    """
    if cache is None:
        return None
    if not isinstance(cache, (str, os.PathLike)):
        raise TypeError(
            '`cache` must be None, "memory" or the path of a cache file (str or '
            f"os.PathLike). Received: cache={cache!r} of type {type(cache).__name__}"
        )
    path = os.fspath(cache)
    if not isinstance(path, str):
        raise TypeError(f"`cache` must be a text path. Received: cache={cache!r}")
    if path == MEMORY:
        return MEMORY
    if not path:
        raise ValueError(
            '`cache` must be None, "memory" or the path of a cache file; an empty '
            "string is neither (tf.data's `cache()` uses it for memory, here say "
            f'"memory"). Received: cache={cache!r}'
        )
    if os.path.isdir(path):
        raise IsADirectoryError(
            "`cache` must be the path of a file, not of a folder (e.g. "
            f"{os.path.join(path, 'train.kgcache')!r}). Received: cache={cache!r}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"The folder of the cache file does not exist: {folder!r}. Create it first. "
            f"Received: cache={cache!r}"
        )
    return path


def storage_dtype(interpolation: str) -> str:
    """The dtype the cache stores resized images in, for a resizing method.

    Args:
        interpolation: One of `IN_RANGE_INTERPOLATIONS` or
            `OVERSHOOTING_INTERPOLATIONS` (lower case).

    Returns:
        "uint8" (values rounded, within 0.5) or "float16" (within 0.125).

    Raises:
        ValueError: If `interpolation` is not a known method.
    """
    if interpolation in IN_RANGE_INTERPOLATIONS:
        return "uint8"
    if interpolation in OVERSHOOTING_INTERPOLATIONS:
        return "float16"
    allowed = IN_RANGE_INTERPOLATIONS + OVERSHOOTING_INTERPOLATIONS
    raise ValueError(
        f"Argument `interpolation` should be one of {allowed}. "
        f"Received: interpolation={interpolation!r}"
    )


def format_bytes(size: int) -> str:
    """Formats a byte count with a decimal unit: "29.5 MB", "1.20 GB", "512 bytes".

    Args:
        size: A number of bytes.

    Returns:
        The size with three significant digits and its unit.
    """
    if size < 1000:
        return f"{size} bytes"
    value = float(size)
    units = ("kB", "MB", "GB", "TB", "PB")
    power = 0
    while power < len(units) - 1 and value / 1000 ** (power + 1) >= 999.5:
        power += 1
    value /= 1000 ** (power + 1)
    unit = units[power]
    return f"{value:.3g} {unit}" if value < 999.5 else f"{value:,.0f} {unit}"


def _as_shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in shape)


@attrs.frozen
class CacheLayout:
    """The rows of a decoded cache: one image per sample, in the output layout.

    Attributes:
        num_images: N, the number of rows (samples).
        image_shape: The shape of one image, e.g. (224, 224, 3) or, for
            "channels_first", (3, 224, 224).
        dtype: "uint8" or "float16" (see `storage_dtype`); "float32" is
            accepted for an exact cache.
    """

    num_images: int = attrs.field(validator=attrs.validators.ge(0))
    image_shape: tuple[int, ...] = attrs.field(converter=_as_shape)
    dtype: str = attrs.field(validator=attrs.validators.in_(tuple(_BYTES_PER_VALUE)))

    @image_shape.validator
    def _positive(self, _: object, shape: tuple[int, ...]) -> None:
        if not shape or any(int(v) < 1 for v in shape):
            raise ValueError(f"`image_shape` must hold positive sizes. Received: {shape!r}")

    @property
    def row_nbytes(self) -> int:
        """Bytes of one image."""
        size = _BYTES_PER_VALUE[self.dtype]
        for dim in self.image_shape:
            size *= int(dim)
        return size

    @property
    def nbytes(self) -> int:
        """Bytes of the whole cache: N x H x W x C x bytes per value."""
        return self.num_images * self.row_nbytes

    def describe(self) -> str:
        """A one-line summary, e.g. "600 images of 128x128x3 uint8 = 29.5 MB"."""
        shape = "x".join(str(v) for v in self.image_shape)
        return f"{self.num_images:,} images of {shape} {self.dtype} = {format_bytes(self.nbytes)}"


def cache_layout(num_images: int, image_shape: Sequence[int], interpolation: str) -> CacheLayout:
    """The layout of the cache of `num_images` images resized with `interpolation`.

    Args:
        num_images: The number of samples the cache covers.
        image_shape: The shape of one output image.
        interpolation: The resizing method (decides the dtype, see
            `storage_dtype`).

    Returns:
        The `CacheLayout`.
    """
    return CacheLayout(num_images, _as_shape(image_shape), storage_dtype(interpolation))


def _meminfo_available(text: str) -> int | None:
    """MemAvailable (bytes) from the text of /proc/meminfo, or None."""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            return int(parts[1]) * (1024 if parts[-1].lower() == "kb" else 1)
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as file:
            return file.read()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_available(cgroup_root: str) -> int | None:
    """The memory a cgroup (v2, else v1) still allows this process, or None if unlimited."""
    for limit_name, usage_name in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        limit = _read(os.path.join(cgroup_root, limit_name))
        usage = _read(os.path.join(cgroup_root, usage_name))
        if limit is None or usage is None:
            continue
        limit, usage = limit.strip(), usage.strip()
        if not limit.isdigit() or not usage.isdigit():
            return None  # "max": no limit
        if int(limit) >= 1 << 60:  # cgroup v1 writes a huge number for "no limit"
            return None
        return max(int(limit) - int(usage), 0)
    return None


def available_memory(
    meminfo: str = "/proc/meminfo", cgroup_root: str = "/sys/fs/cgroup"
) -> int | None:
    """Bytes of memory this process can still use, or None if unknown.

    The smallest of the kernel's `MemAvailable` (Linux), the room left under
    the memory limit of this container's cgroup (v2 or v1), and, where
    /proc/meminfo is missing, the free physical pages (`os.sysconf`).

    Args:
        meminfo: The meminfo file to read (a parameter for tests).
        cgroup_root: The cgroup file system root (a parameter for tests).

    Returns:
        The available bytes, or None where the platform says nothing.
    """
    found = []
    text = _read(meminfo)
    if text is not None:
        found.append(_meminfo_available(text))
    else:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    found.append(_cgroup_available(cgroup_root))
    known = [value for value in found if value is not None]
    return min(known) if known else None


def check_fits_in_memory(layout: CacheLayout, available: int | None = None) -> None:
    """Raises before any image is stored if the cache cannot fit in memory.

    Args:
        layout: What the cache will hold.
        available: The available bytes (default: `available_memory()`);
            None means unknown, and then nothing is checked.

    Raises:
        MemoryError: If `layout.nbytes` exceeds the available memory. The
            message gives both sizes and suggests a cache file or a smaller
            `image_size`.
    """
    if available is None:
        available = available_memory()
    if available is None or layout.nbytes <= available:
        return
    raise MemoryError(
        f'cache="memory" needs {format_bytes(layout.nbytes)} ({layout.describe()}), but only '
        f"{format_bytes(available)} of memory is available. Pass the path of a cache file "
        "instead (e.g. cache='/data/train.kgcache', which keeps the images on disk and "
        "lets the operating system page them in), or a smaller `image_size`."
    )
