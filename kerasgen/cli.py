"""The `kerasgen` command line: inspect a folder's classes and plans, preview a batch.

`kerasgen inspect` needs no TensorFlow. `kerasgen preview` decodes and resizes
images with TensorFlow, exactly as the training pipeline does, and draws the
grid with Pillow.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

import numpy as np

from balanced_sampler import BalancedBatchSampler, index_directory, split
from balanced_sampler.decoded_cache import (
    IN_RANGE_INTERPOLATIONS,
    OVERSHOOTING_INTERPOLATIONS,
    available_memory,
    cache_layout,
    format_bytes,
)
from kerasgen.grid import save_batch_grid
from kerasgen.histogram import save_size_histogram
from kerasgen.native_stderr import quiet_native_logs_until_exit

_PROGRESS_MIN_FOLDERS = 200


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"kerasgen: error: {message}\n")


def _progress_bar(done: int, total: int) -> None:
    """Draws a text progress bar for indexing on stderr."""
    if total < _PROGRESS_MIN_FOLDERS:
        return
    width = 30
    filled = width * done // total
    sys.stderr.write(
        f"\rIndexing class folders [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    )
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _add_plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="a folder with one sub-folder of images per class")
    parser.add_argument(
        "-P",
        "--num-classes-per-batch",
        type=int,
        default=8,
        metavar="P",
        help="distinct classes in every batch (default: 8)",
    )
    parser.add_argument(
        "-K",
        "--num-images-per-class",
        type=int,
        default=4,
        metavar="K",
        help="images of each class in every batch (default: 4)",
    )
    parser.add_argument(
        "--safe-triplet",
        action="store_true",
        help="exact P x K batches (fixed mode) instead of every image once per epoch",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the plan and of the split (default: drawn at random and printed)",
    )
    parser.add_argument("--epoch", type=int, default=0, help="which epoch to plan (default: 0)")
    parser.add_argument(
        "--validation-split",
        type=float,
        default=None,
        metavar="F",
        help="fraction held out for validation, in (0, 1); needs --seed",
    )
    parser.add_argument(
        "--subset",
        choices=("training", "validation"),
        default="training",
        help="with --validation-split: which subset to plan (default: training)",
    )
    parser.add_argument(
        "--split-by",
        choices=("samples", "classes"),
        default="samples",
        help="with --validation-split: stratified by samples, or whole classes (default: samples)",
    )
    parser.add_argument("--follow-links", action="store_true", help="follow symlinked sub-folders")


_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


def _add_cache_options(parser: argparse.ArgumentParser) -> None:
    """The image options `inspect` needs to size the decoded cache."""
    parser.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="also print the size of the decoded cache (cache='memory' or a file) for images "
        "of N x N, or H W",
    )
    parser.add_argument(
        "--color-mode",
        choices=tuple(_CHANNELS),
        default="rgb",
        help="with --image-size: the color mode (default: rgb)",
    )
    parser.add_argument(
        "--interpolation",
        choices=IN_RANGE_INTERPOLATIONS + OVERSHOOTING_INTERPOLATIONS,
        default="bilinear",
        help="with --image-size: the resizing method, which sets the cache's dtype "
        "(default: bilinear)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of the `kerasgen` command."""
    parser = _Parser(
        prog="kerasgen",
        description="Balanced P x K batches for metric learning: inspect a class-per-folder "
        "image set and the batches kerasgen would build from it.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    inspect = commands.add_parser(
        "inspect",
        help="class sizes and the quality of the epoch plan (no TensorFlow needed)",
        description="Prints the class count, images per class and the epoch plan's figures "
        "(batches, coverage, exact-PxK and triplet-valid fractions) for the chosen settings.",
    )
    _add_plan_options(inspect)
    inspect.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="also save a histogram of class sizes as a PNG (needs Pillow)",
    )
    _add_cache_options(inspect)
    preview = commands.add_parser(
        "preview",
        help="render one balanced batch as a grid, a row per class (needs TensorFlow, Pillow)",
        description="Decodes and resizes one batch exactly as the training pipeline does and "
        "saves it as a grid, one row per class with its name.",
    )
    _add_plan_options(preview)
    preview.add_argument("--out", required=True, metavar="FILE.png", help="where to save the grid")
    preview.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        default=[96],
        metavar="N",
        help="cell size: N for N x N, or H W (default: 96)",
    )
    preview.add_argument(
        "--batch", type=int, default=0, help="which batch of the epoch (default: 0)"
    )
    return parser


def _load(args: argparse.Namespace) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Indexes the folder and applies the split: (paths, labels, class names, kept indices)."""
    paths, labels, class_names = index_directory(
        args.directory, follow_links=args.follow_links, progress=_progress_bar
    )
    kept = np.arange(len(paths))
    if args.validation_split is not None:
        if args.seed is None:
            raise ValueError("--validation-split needs --seed, so both subsets stay disjoint")
        kept = split(labels, args.validation_split, args.subset, args.seed, by=args.split_by)
    return paths, labels, class_names, kept


def _sampler(args: argparse.Namespace, labels: np.ndarray) -> BalancedBatchSampler:
    return BalancedBatchSampler(
        labels,
        args.num_classes_per_batch,
        args.num_images_per_class,
        safe_triplet=args.safe_triplet,
        seed=args.seed,
    )


def _inspect(args: argparse.Namespace) -> None:
    shape = None if args.image_size is None else _cache_image_shape(args)  # checked first
    paths, labels, class_names, kept = _load(args)
    k = args.num_images_per_class
    sizes = np.bincount(labels[kept], minlength=len(class_names))
    nonempty = sizes[sizes > 0]
    print(f"Found {len(paths)} files belonging to {len(class_names)} classes.")
    if args.validation_split is not None:
        print(f"Using {len(kept)} files for {args.subset} (split by {args.split_by}).")
    print(
        f"Images per class: min {int(nonempty.min())}, median {float(np.median(nonempty)):g}, "
        f"max {int(nonempty.max())}; {int((nonempty < k).sum())} classes below K={k}; "
        f"{int((nonempty == 1).sum())} with a single image; "
        f"{int((sizes == 0).sum())} empty."
    )
    sampler = _sampler(args, labels[kept])
    stats = sampler.stats(args.epoch)
    mode = "fixed (safe_triplet)" if args.safe_triplet else "exhaustive"
    print(
        f"Plan: P={args.num_classes_per_batch}, K={k}, {mode}, seed {sampler.seed}, "
        f"epoch {args.epoch}:"
    )
    for line in str(stats).splitlines():
        print(f"  {line}")
    if shape is not None:
        _print_cache_size(args, shape, len(kept))
    if args.plot:
        save_size_histogram(nonempty, k, args.plot)
        print(f"Saved the class-size histogram to {args.plot}")


def _image_size(args: argparse.Namespace) -> tuple[int, int]:
    """The (H, W) of `--image-size` (N for N x N, or H W)."""
    sizes = args.image_size * 2 if len(args.image_size) == 1 else args.image_size
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(f"--image-size takes N or H W, positive. Received: {args.image_size}")
    return (sizes[0], sizes[1])


def _cache_image_shape(args: argparse.Namespace) -> tuple[int, int, int]:
    """The (H, W, C) of `--image-size` and `--color-mode`."""
    return (*_image_size(args), _CHANNELS[args.color_mode])


def _print_cache_size(
    args: argparse.Namespace, shape: tuple[int, int, int], num_images: int
) -> None:
    """Prints how much memory (or disk) the decoded cache of these images takes."""
    layout = cache_layout(num_images, shape, args.interpolation)
    subset = f" of the {args.subset} subset" if args.validation_split is not None else ""
    print(
        f"Decoded cache{subset} ({args.color_mode}, {args.interpolation}): {layout.describe()} "
        f"({format_bytes(layout.row_nbytes)} per image)."
    )
    available = available_memory()
    if available is None:
        print("  Available memory: unknown.")
    elif layout.nbytes <= available:
        print(f'  Fits in the {format_bytes(available)} of available memory: cache="memory".')
    else:
        print(
            f"  Does not fit in the {format_bytes(available)} of available memory: pass a "
            "cache file path (cache='/data/train.kgcache') or a smaller image_size."
        )


def _preview(args: argparse.Namespace) -> None:
    paths, labels, class_names, kept = _load(args)
    sampler = _sampler(args, labels[kept])
    plan = sampler.plan(args.epoch)
    if not 0 <= args.batch < len(plan):
        raise ValueError(f"--batch must be in [0, {len(plan)}). Received: {args.batch}")
    batch = kept[plan[args.batch]]
    images = _load_images([paths[i] for i in batch], _image_size(args))
    save_batch_grid(images, labels[batch], class_names, args.out)
    print(
        f"Saved batch {args.batch} of epoch {args.epoch} ({len(batch)} images, "
        f"{len(np.unique(labels[batch]))} classes) to {args.out}"
    )


def _load_images(paths: list[str], size: tuple[int, int]) -> np.ndarray:
    """Decodes the images with TensorFlow, as the pipeline does, its native logs hidden."""
    quiet_native_logs_until_exit()  # TensorFlow logs at start-up, on errors and at exit
    import tensorflow as tf

    from kerasgen_tf._bad_images import describe_file, problem_before_decoding
    from kerasgen_tf._decode import load_images

    for path in paths:  # empty, missing or not an image: said without a failing decode
        reason = problem_before_decoding(path)
        if reason is not None:
            raise ValueError(f"cannot load image {path}: {reason}")
    try:
        return load_images(paths, size)
    except tf.errors.OpError:
        for path in paths:  # name the file that cannot be decoded, and why
            try:
                load_images([path], size)
            except tf.errors.OpError:
                raise ValueError(
                    f"cannot load image {path}: {describe_file(path, num_channels=3)}"
                ) from None
        raise


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """Formats a warning as one `kerasgen: warning: ...` line."""
    return f"kerasgen: warning: {' '.join(str(message).split())}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `kerasgen` command.

    Args:
        argv: The arguments (default: `sys.argv[1:]`).

    Returns:
        The exit status: 0, or 2 after a one-line error on stderr.
    """
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        if args.command == "inspect":
            _inspect(args)
        else:
            _preview(args)
    except (ValueError, TypeError, OSError, ImportError) as error:
        message = " ".join(str(error).split())
        sys.stderr.write(f"kerasgen: error: {message}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
