"""kerasgen demo: balanced P x K batches train an embedding that retrieves unseen identities.

Run on a fresh machine with `pip install nox && nox -s demo` (or, with
kerasgen[tensorflow,plot] and scikit-learn installed, `python examples/demo.py`).

1. Cuts identities out of the two photos scikit-learn ships (no download; see
   `photo_identities.py`): 150 for training, 60 held-out identities from other parts of
   the photos (classes the model never sees), as folders of 32x32 JPEGs.
2. Builds exact P x K training batches (`safe_triplet=True`) with
   `balanced_image_dataset_from_directory`.
3. Trains a small convolutional embedding with `TripletSemiHardLoss`; the
   `RetrievalEvaluation` callback measures Recall@K and MAP@R of the held-out identities
   at the end of every epoch, in `fit`'s logs.
4. Prints Recall@1 and MAP@R before and after training, saves one balanced batch as
   `batch.png` and the held-out MAP@R and Recall@1 per epoch as `map_at_r.png`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from photo_identities import IMAGE_SIZE, embedding_network, write_identities

from kerasgen.native_stderr import quiet_native_logs_until_exit

P, K = 8, 4
MARGIN = 0.2


def main() -> int:
    """Runs the demo; returns 0 if held-out MAP@R went up, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="batch.png", help="where to save the batch picture")
    parser.add_argument("--curve", default=None,
                        help="where to save the MAP@R curve (default: map_at_r.png next to --out)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    curve_path = args.curve or str(Path(args.out).with_name("map_at_r.png"))
    start = time.perf_counter()

    quiet_native_logs_until_exit()  # TensorFlow's C++ log lines (start-up, tf.data, exit)
    import keras

    from kerasgen.curve import save_metric_curves
    from kerasgen.grid import save_batch_grid
    from kerasgen_tf import balanced_image_dataset_from_directory
    from kerasgen_tf.evaluation import RetrievalEvaluation, embed_dataset, retrieval_metrics
    from kerasgen_tf.losses import TripletSemiHardLoss

    keras.utils.set_random_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="kerasgen-demo-") as tmp:
        print("1/4 Cutting identities out of scikit-learn's two sample photos ...")
        train_dir, heldout_dir = write_identities(Path(tmp), seed=args.seed)

        print(f"2/4 Building balanced batches (P={P} identities x K={K} images, "
              "safe_triplet=True) ...")
        train_ds = balanced_image_dataset_from_directory(
            train_dir,
            num_classes_per_batch=P,
            num_images_per_class=K,
            image_size=IMAGE_SIZE,
            safe_triplet=True,
            seed=args.seed,
        )
        print(train_ds.sampler.stats(0))
        heldout_ds = balanced_image_dataset_from_directory(
            heldout_dir, num_classes_per_batch=P, num_images_per_class=K,
            image_size=IMAGE_SIZE, shuffle=False, verbose=False,
        )
        images, labels = next(iter(train_ds))
        save_batch_grid(images.numpy(), labels.numpy(), train_ds.class_names, args.out, scale=2)

        model = embedding_network()
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=TripletSemiHardLoss(MARGIN))
        before = retrieval_metrics(*embed_dataset(model, heldout_ds))

        print(f"3/4 Training for {args.epochs} epochs of {len(train_ds)} batches, measuring "
              f"the {len(heldout_ds.file_paths)} held-out images after each ...")
        evaluation = RetrievalEvaluation(heldout_ds)
        # The sampler plans (and reshuffles) every epoch; Keras has nothing to shuffle.
        model.fit(
            train_ds, epochs=args.epochs, shuffle=False, callbacks=[evaluation],
            verbose=1 if sys.stdout.isatty() else 2,
        )

        print("4/4 Saving the pictures ...")
        after = {name.removeprefix("val_"): values[-1]
                 for name, values in evaluation.history.items()}
        save_metric_curves(  # epoch 0: before training
            [0] + [epoch + 1 for epoch in evaluation.epochs],
            {name: [before[name.removeprefix("val_")], *evaluation.history[name]]
             for name in ("val_map@r", "val_recall@1")},
            curve_path,
            title=f"Held-out identities ({len(heldout_ds.class_names)} classes never trained on)",
        )

    print()
    print(f"| {len(heldout_ds.class_names)} held-out identities | Recall@1 | MAP@R |")
    print("|---|---|---|")
    print(f"| before training | {before['recall@1']:.3f} | {before['map@r']:.3f} |")
    print(f"| after training  | {after['recall@1']:.3f} | {after['map@r']:.3f} |")
    print(f"\nSaved one balanced training batch to {args.out} and MAP@R per epoch to "
          f"{curve_path}.")
    print(f"Done in {time.perf_counter() - start:.0f} s.")
    if after["map@r"] <= before["map@r"]:
        print("MAP@R did not go up: something is wrong.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
