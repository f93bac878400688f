"""Each file's pixels equal those of Keras' own `image_dataset_from_directory`."""

from __future__ import annotations

import numpy as np
import pytest
from tf_image_files import write_image

from kerasgen_tf import balanced_image_dataset_from_directory

keras = pytest.importorskip("keras")

# (width, height): odd aspect ratios exercise the crop / pad rounding.
SIZES = [(37, 23), (10, 41), (16, 16), (5, 9), (50, 7)]
IMAGE_SIZE = (12, 17)


def _tree(root, formats, modes=("RGB",)):
    seed = 0
    for c in range(3):
        for i, size in enumerate(SIZES):
            fmt = formats[seed % len(formats)]
            mode = modes[seed % len(modes)]
            write_image(root / f"class_{c}" / f"{i}.{fmt}", seed, size, mode)
            seed += 1
    return root


@pytest.fixture(scope="module")
def rgb_tree(tmp_path_factory):
    return _tree(tmp_path_factory.mktemp("rgb"), ("png", "jpg", "bmp", "gif"), ("RGB", "L"))


@pytest.fixture(scope="module")
def gray_tree(tmp_path_factory):
    # Keras cannot load GIF or BMP files in grayscale (TensorFlow's decoders).
    return _tree(tmp_path_factory.mktemp("gray"), ("png", "jpg"), ("RGB", "L", "RGBA"))


@pytest.fixture(scope="module")
def rgba_tree(tmp_path_factory):
    # Keras cannot load GIF or JPEG files in RGBA (TensorFlow's decoders).
    return _tree(tmp_path_factory.mktemp("rgba"), ("png", "bmp"), ("RGBA", "RGB", "L"))


def keras_pixels(directory, **kwargs):
    ds = keras.utils.image_dataset_from_directory(
        directory, label_mode=None, batch_size=None, shuffle=False, verbose=False, **kwargs
    )
    return {
        path: np.asarray(image, dtype=np.float32)
        for path, image in zip(ds.file_paths, ds, strict=True)
    }


def our_pixels(directory, **kwargs):
    ds = balanced_image_dataset_from_directory(
        directory, 2, 2, label_mode=None, seed=0, verbose=False, **kwargs
    )
    pixels = {}
    for images, index in zip(ds, ds.sampler.plan(0), strict=True):
        assert images.dtype == "float32"
        for image, i in zip(images.numpy(), index, strict=True):
            pixels[ds.file_paths[i]] = image
    return pixels


def assert_same_pixels(directory, **kwargs):
    theirs = keras_pixels(directory, image_size=IMAGE_SIZE, **kwargs)
    ours = our_pixels(directory, image_size=IMAGE_SIZE, **kwargs)
    assert sorted(ours) == sorted(theirs)
    for path, image in theirs.items():
        np.testing.assert_array_equal(ours[path], image, err_msg=path)


@pytest.mark.parametrize(
    "interpolation",
    ["bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic"],
)
def test_resize(rgb_tree, interpolation):
    assert_same_pixels(rgb_tree, interpolation=interpolation)


# Keras' crop path supports the six methods of keras.ops.image.resize.
@pytest.mark.parametrize(
    "interpolation", ["bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5"]
)
def test_crop_to_aspect_ratio(rgb_tree, interpolation):
    assert_same_pixels(rgb_tree, interpolation=interpolation, crop_to_aspect_ratio=True)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "area"])
def test_pad_to_aspect_ratio(rgb_tree, interpolation):
    assert_same_pixels(rgb_tree, interpolation=interpolation, pad_to_aspect_ratio=True)


@pytest.mark.parametrize(
    "kwargs", [{}, {"crop_to_aspect_ratio": True}, {"pad_to_aspect_ratio": True}]
)
def test_channels_first(rgb_tree, kwargs):
    assert_same_pixels(rgb_tree, data_format="channels_first", **kwargs)


def test_grayscale(gray_tree):
    assert_same_pixels(gray_tree, color_mode="grayscale")


def test_rgba(rgba_tree):
    assert_same_pixels(rgba_tree, color_mode="rgba", crop_to_aspect_ratio=True)


@pytest.mark.parametrize(("color_mode", "channels"), [("grayscale", 1), ("rgba", 4)])
def test_files_keras_cannot_load_in_a_color_mode_still_load(tmp_path, color_mode, channels):
    # GIF and BMP in grayscale, GIF and JPEG in RGBA, WebP in any mode.
    for i, fmt in enumerate(("gif", "bmp", "jpg", "webp", "png")):
        write_image(tmp_path / "a" / f"{i}.{fmt}", i, (9, 7))
        write_image(
            tmp_path / "b" / f"{i}.{fmt}", i + 10, (6, 11), "RGBA" if fmt == "webp" else "RGB"
        )
    rgb = our_pixels(tmp_path, image_size=(5, 4))
    converted = our_pixels(tmp_path, image_size=(5, 4), color_mode=color_mode)
    assert len(converted) == 10
    for path, image in converted.items():
        assert image.shape == (5, 4, channels)
        if channels == 4:
            np.testing.assert_array_equal(image[..., :3], rgb[path])
            if not path.endswith(".webp"):
                assert (image[..., 3] == 255).all()
