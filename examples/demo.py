"""kerasgen demo: balanced P x K batches train a metric-learning embedding.

Run on a fresh machine with `pip install nox && nox -s demo` (or, with
kerasgen[tensorflow] and scikit-learn installed, `python examples/demo.py`).

1. Writes scikit-learn's 8x8 handwritten digits, upscaled to 32x32, as class
   folders of PNG files in a temporary folder: digits 0-6 for training,
   7-9 held out (classes the model never sees).
2. Builds exact P x K training batches (`safe_triplet=True`) with
   `balanced_image_dataset_from_directory`.
3. Trains a small convolutional embedding with `TripletSemiHardLoss`.
4. Reports Recall@1 on the held-out classes before and after training, and
   saves a picture of one balanced batch as `batch.png`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRAIN_DIGITS = range(7)
HELDOUT_DIGITS = range(7, 10)
IMAGE_SIZE = (32, 32)


def write_digits(root: Path) -> tuple[Path, Path]:
    """Writes the digits as PNG class folders; returns (train dir, held-out dir)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images * (255.0 / 16.0)).astype(np.uint8)
    for i, (image, digit) in enumerate(zip(pixels, digits.target.tolist(), strict=True)):
        split = "train" if digit in TRAIN_DIGITS else "heldout"
        folder = root / split / f"digit_{digit}"
        folder.mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(image, mode="L").resize(IMAGE_SIZE, Image.Resampling.BILINEAR)
        big.save(folder / f"{i:04d}.png")
    return root / "train", root / "heldout"


def embedding_model():  # type: ignore[no-untyped-def]
    """A small convolutional network mapping a 32x32 digit to a unit 32-d vector."""
    import keras

    return keras.Sequential(
        [
            keras.Input((*IMAGE_SIZE, 1)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(32),
            keras.layers.UnitNormalization(),
        ],
        name="digit_embedding",
    )


def recall_at_1(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of images whose nearest other image has the same label."""
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    return float(np.mean(labels[np.argmax(similarity, axis=1)] == labels))


def main() -> int:
    """Runs the demo; returns 0 if Recall@1 went up, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default="batch.png", help="where to save the batch picture")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()

    import keras

    from kerasgen.grid import save_batch_grid
    from kerasgen_tf import balanced_image_dataset_from_directory
    from kerasgen_tf.losses import TripletSemiHardLoss

    keras.utils.set_random_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="kerasgen-demo-") as tmp:
        print("1/4 Writing scikit-learn's digits as PNG class folders ...")
        train_dir, heldout_dir = write_digits(Path(tmp))

        print("2/4 Building balanced batches (P=7 digits x K=8 images, safe_triplet=True) ...")
        train_ds = balanced_image_dataset_from_directory(
            train_dir,
            num_classes_per_batch=7,
            num_images_per_class=8,
            color_mode="grayscale",
            image_size=IMAGE_SIZE,
            safe_triplet=True,
            seed=args.seed,
        )
        print(train_ds.sampler.stats(0))
        heldout_ds = balanced_image_dataset_from_directory(
            heldout_dir,
            num_classes_per_batch=3,
            num_images_per_class=16,
            color_mode="grayscale",
            image_size=IMAGE_SIZE,
            shuffle=False,
            verbose=False,
        )
        heldout = [(x.numpy(), y.numpy()) for x, y in heldout_ds]
        heldout_images = np.concatenate([x for x, _ in heldout])
        heldout_labels = np.concatenate([y for _, y in heldout])

        images, labels = next(iter(train_ds))
        save_batch_grid(images.numpy(), labels.numpy(), train_ds.class_names, args.out, scale=2)

        model = embedding_model()
        model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=TripletSemiHardLoss(0.5))
        before = recall_at_1(model.predict(heldout_images, verbose=0), heldout_labels)

        print(f"3/4 Training for {args.epochs} epochs of {len(train_ds)} batches ...")
        # The sampler plans (and reshuffles) every epoch; Keras has nothing to shuffle.
        model.fit(
            train_ds, epochs=args.epochs, shuffle=False, verbose=1 if sys.stdout.isatty() else 2
        )

        print("4/4 Measuring Recall@1 on the held-out digits 7, 8, 9 ...")
        after = recall_at_1(model.predict(heldout_images, verbose=0), heldout_labels)

    print()
    print(f"| held-out digits 7-9 ({len(heldout_labels)} images) | Recall@1 |")
    print("|---|---|")
    print(f"| before training | {before:.3f} |")
    print(f"| after training  | {after:.3f} |")
    print(f"\nSaved one balanced training batch to {args.out}.")
    print(f"Done in {time.perf_counter() - start:.0f} s.")
    if after <= before:
        print("Recall@1 did not go up: something is wrong.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
