"""Read, decode and resize one image exactly as Keras' loader does.

The pixels equal those of `keras.utils.image_dataset_from_directory` for
the same file and options (Keras 3.15, TensorFlow backend):

- `tf.io.decode_image(..., channels=C, expand_animations=False)` (the first
  frame of an animated GIF);
- plain resizing with `tf.image.resize` (no antialiasing);
- `crop_to_aspect_ratio`: the largest centred window with the target aspect
  ratio, its size and offset computed in float32 and truncated as Keras'
  `smart_resize` does, then `tf.image.resize`;
- `pad_to_aspect_ratio`: `tf.image.resize_with_pad`;
- `channels_first`: the resized image transposed to (C, H, W).

Two differences on purpose, where Keras gives no pixels to compare with:

- the result is always float32 (Keras returns uint8 images for
  `interpolation="nearest"`, the dtype of `tf.image.resize` with that
  method; the values are the same);
- files that TensorFlow cannot decode in the asked number of channels
  (and Keras then fails on) still load: GIFs and BMPs in "grayscale", GIFs
  and JPEGs in "rgba", and WebP files (decoded only in their own channel
  count) are decoded as they are and converted (`tf.image.rgb_to_grayscale`,
  an opaque alpha channel, ...). This fallback is built in only when a
  file name has one of those extensions (see `needs_format_check`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from kerasgen_tf._args import ImageOptions, check_image_options

__all__ = ["RISKY_FORMATS", "load_images", "make_image_loader", "needs_format_check"]


def _centre_crop(image: tf.Tensor, target_height: int, target_width: int) -> tf.Tensor:
    """The largest centred (H, W, C) window with the target aspect ratio.

    Sizes and offsets are computed with the same int32 -> float32 -> int32
    steps as Keras' `smart_resize`, so the window is the same to the pixel.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]

    def scaled(size: tf.Tensor, numerator: int, denominator: int) -> tf.Tensor:
        return tf.cast(tf.cast(size * numerator, tf.float32) / denominator, tf.int32)

    crop_height = tf.maximum(tf.minimum(height, scaled(width, target_height, target_width)), 1)
    crop_width = tf.maximum(tf.minimum(width, scaled(height, target_width, target_height)), 1)
    top = tf.cast(tf.cast(height - crop_height, tf.float32) / 2, tf.int32)
    left = tf.cast(tf.cast(width - crop_width, tf.float32) / 2, tf.int32)
    return image[top : top + crop_height, left : left + crop_width, :]


# The formats that TensorFlow 2.21 cannot decode in a channel count (its
# decoders for WebP, GIF, BMP and JPEG), with their file extensions.
RISKY_FORMATS = {1: ("WebP", "GIF", "BMP"), 3: ("WebP",), 4: ("WebP", "GIF", "JPEG")}
_EXTENSIONS = {"WebP": (".webp",), "GIF": (".gif",), "BMP": (".bmp",), "JPEG": (".jpg", ".jpeg")}
_RISKY_EXTENSIONS = {
    channels: tuple(ext for kind in kinds for ext in _EXTENSIONS[kind])
    for channels, kinds in RISKY_FORMATS.items()
}


def needs_format_check(file_paths: Sequence[str], color_mode_channels: int) -> bool:
    """Whether any file may need the decoding fallback of `_decode`.

    Checking every file's leading bytes costs a conditional per image (about
    7 % of the throughput of small images), so the check is only built in
    when a file name suggests it can be needed. Other files that TensorFlow
    cannot decode fail as they do in Keras.

    Args:
        file_paths: The files of the dataset.
        color_mode_channels: 1, 3 or 4.

    Returns:
        True if some file has an extension that TensorFlow may not decode in
        that many channels.
    """
    risky = _RISKY_EXTENSIONS[color_mode_channels]
    return any(path.lower().endswith(risky) for path in file_paths)


def _starts_with(raw: tf.Tensor, offset: int, magic: bytes) -> tf.Tensor:
    return tf.equal(tf.strings.substr(raw, offset, len(magic)), magic)


def _needs_native_decode(raw: tf.Tensor, channels: int) -> tf.Tensor:
    """Whether `decode_image(channels=channels)` would fail on this file.

    TensorFlow 2.21 decodes WebP only in its own channel count, GIF only in
    RGB, BMP not in grayscale and JPEG not in RGBA.
    """
    is_webp = _starts_with(raw, 0, b"RIFF") & _starts_with(raw, 8, b"WEBP")
    if channels == 1:
        return is_webp | _starts_with(raw, 0, b"GIF") | _starts_with(raw, 0, b"BM")
    if channels == 4:
        return is_webp | _starts_with(raw, 0, b"GIF") | _starts_with(raw, 0, b"\xff\xd8\xff")
    return is_webp


# Where the R, G, B and A channels of an image of 1 to 4 channels (gray, gray
# + alpha, RGB, RGBA) are, once an opaque alpha channel is appended to it.
_RGBA_CHANNELS = ((0, 0, 0, 1), (0, 0, 0, 1), (0, 1, 2, 3), (0, 1, 2, 3))


def _convert_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Converts a uint8 image of 1 to 4 channels (gray, gray+alpha, RGB, RGBA).

    Gray is copied to R, G and B; a missing alpha channel is opaque; RGB is
    made gray by `tf.image.rgb_to_grayscale`, gray stays as it is.
    """
    native = tf.shape(image)[-1]
    opaque = tf.fill(tf.shape(image[:, :, :1]), tf.constant(255, tf.uint8))
    padded = tf.concat([image, opaque], axis=-1)
    rgba = tf.gather(padded, tf.constant(_RGBA_CHANNELS)[native - 1], axis=-1)
    if channels == 4:
        return rgba
    if channels == 3:
        return rgba[:, :, :3]
    return tf.where(native <= 2, rgba[:, :, :1], tf.image.rgb_to_grayscale(rgba[:, :, :3]))


def _decode(raw: tf.Tensor, channels: int, check_format: bool) -> tf.Tensor:
    """`tf.io.decode_image` as Keras calls it, for every format and channel count.

    Where TensorFlow can decode the file in `channels` channels (every case
    Keras can load), this is Keras' own call. Otherwise the file is decoded
    in its own channel count and converted (`tf.image.rgb_to_grayscale`,
    an opaque alpha channel, ...).
    """

    def keras_decode() -> tf.Tensor:
        return tf.io.decode_image(raw, channels=channels, expand_animations=False)

    if not check_format:
        return keras_decode()

    def native_decode() -> tf.Tensor:
        native = tf.io.decode_image(raw, channels=0, expand_animations=False)
        return _convert_channels(native, channels)

    image = tf.cond(_needs_native_decode(raw, channels), native_decode, keras_decode)
    image.set_shape((None, None, channels))
    return image


def make_image_loader(
    options: ImageOptions, check_format: bool = True
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns a function mapping a file path (scalar string) to an image.

    Args:
        options: The validated image options.
        check_format: Whether to check each file's format and decode the
            ones TensorFlow cannot decode in the asked number of channels
            through the fallback (see `needs_format_check`).

    Returns:
        A TensorFlow-traceable function `path -> float32 image` of static
        shape `options.image_shape`, with values in 0..255. It raises
        TensorFlow's error if the file cannot be read or decoded.
    """
    channels = options.num_channels

    def load(path: tf.Tensor) -> tf.Tensor:
        return _resize(_decode(tf.io.read_file(path), channels, check_format), options)

    return load


def _resize(image: tf.Tensor, options: ImageOptions) -> tf.Tensor:
    """Resizes (crops, pads) a decoded uint8 image as Keras does; float32, `data_format` order."""
    height, width = options.image_size
    method = options.interpolation
    if options.crop_to_aspect_ratio:
        image = tf.image.resize(_centre_crop(image, height, width), (height, width), method)
    elif options.pad_to_aspect_ratio:
        image = tf.image.resize_with_pad(image, height, width, method=method)
    else:
        image = tf.image.resize(image, (height, width), method=method)
    image = tf.cast(image, tf.float32)
    if options.data_format == "channels_first":
        image = tf.transpose(image, (2, 0, 1))
    image.set_shape(options.image_shape)
    return image


def load_images(
    file_paths: Sequence[str],
    image_size: tuple[int, int],
    color_mode: str = "rgb",
    interpolation: str = "bilinear",
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Loads image files eagerly, with the pixels the datasets yield.

    Args:
        file_paths: Paths of the images.
        image_size: `(height, width)`.
        color_mode: "grayscale", "rgb" or "rgba".
        interpolation: The resizing method (see `INTERPOLATIONS`).
        crop_to_aspect_ratio: Crop to the target aspect ratio first.
        pad_to_aspect_ratio: Pad to the target aspect ratio.

    Returns:
        A float32 array `(len(file_paths), height, width, channels)`,
        values in 0..255.

    Raises:
        ValueError: If an option is not allowed.
    """
    options = check_image_options(
        color_mode=color_mode,
        image_size=image_size,
        interpolation=interpolation,
        crop_to_aspect_ratio=crop_to_aspect_ratio,
        pad_to_aspect_ratio=pad_to_aspect_ratio,
        data_format="channels_last",
    )
    load = tf.function(make_image_loader(options))
    shape = (0, *options.image_shape)
    images = [load(tf.constant(os.fspath(path))).numpy() for path in file_paths]
    return np.stack(images) if images else np.zeros(shape, np.float32)
