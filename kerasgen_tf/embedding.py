"""Embed every sample of a dataset once, in a plain sequential order.

A balanced dataset plays P x K plans: in fixed mode an epoch repeats some images and leaves
others out, and every pass over it advances the sampler to the next epoch. Evaluation and
class statistics (centroids, neighbour tables) need each sample exactly once instead, and
must not disturb training. `sequential_dataset` reads the files of a balanced dataset in the
order of `dataset.file_paths`, with the dataset's own decoding options, without touching its
sampler; `embed_dataset` runs a model over it (or over any batched `(images, labels)`
dataset) and returns the embeddings with their labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import attrs
import keras
import numpy as np
import tensorflow as tf

from balanced_sampler.checks import check_int
from kerasgen_tf._pipeline import Pipeline, pipeline_of
from kerasgen_tf._plans import PlanTable

__all__ = ["embed_dataset", "is_balanced_dataset", "sequential_dataset"]

_DEFAULT_BATCH_SIZE = 64


def is_balanced_dataset(dataset: object) -> bool:
    """Whether `dataset` was made by `balanced_image_dataset_from_directory` / `_from_paths`.

    Args:
        dataset: Any object.

    Returns:
        True if it carries the `sampler` and `file_paths` those functions attach.
    """
    return hasattr(dataset, "sampler") and hasattr(dataset, "file_paths")


def _pipeline(dataset: Any) -> Pipeline:
    """The pipeline a balanced dataset was built with (its decoding, guard and cache)."""
    pipeline = pipeline_of(dataset)
    if pipeline is None:
        raise TypeError(
            "This dataset carries `sampler` and `file_paths` but is not the dataset returned "
            "by `balanced_image_dataset_from_directory` or `balanced_image_dataset_from_paths` "
            "(a dataset derived from it by `map`, `batch`... is a new dataset), so its images "
            "cannot be read in sequential order. Pass the dataset those functions return. "
            f"Received: dataset={dataset!r}"
        )
    return pipeline


def _check_batch_size(batch_size: object) -> int | None:
    return None if batch_size is None else check_int("batch_size", batch_size, minimum=1)


def _check_samples(samples: object, num_files: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """`samples` as an int64 vector of positions in `file_paths`."""
    array = np.asarray(samples)
    if array.ndim != 1 or (array.size and (array.dtype.kind not in "iu")):
        raise TypeError(
            "`samples` must be a 1-D sequence of integer positions in `dataset.file_paths`. "
            f"Received: an array of shape {array.shape} and dtype {array.dtype}"
        )
    positions = array.astype(np.int64)
    outside = (positions < 0) | (positions >= num_files)
    if outside.any():
        raise ValueError(
            f"`samples` must be positions in `dataset.file_paths`, in [0, {num_files}). "
            f"Received: {int(positions[outside][0])} (and {int(outside.sum()) - 1} more outside)"
        )
    return positions


def _kept_samples(
    dataset: Any, samples: object = None
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Positions in `file_paths` (all, or `samples`) of the files not known to be unreadable."""
    paths = dataset.file_paths
    chosen = (
        np.arange(len(paths), dtype=np.int64)
        if samples is None
        else _check_samples(samples, len(paths))
    )
    skipped = set(getattr(dataset, "skipped_files", None) or ())
    if not skipped:
        return chosen
    readable = np.array([paths[i] not in skipped for i in chosen.tolist()], dtype=bool)
    kept: np.ndarray[Any, np.dtype[np.int64]] = chosen[readable]
    if len(kept) < len(chosen):
        warnings.warn(
            f"Embedding leaves out {len(chosen) - len(kept)} of {len(chosen)} files that "
            "could not be loaded (listed in `dataset.skipped_files`).",
            stacklevel=4,
        )
    return kept


def sequential_dataset(
    dataset: tf.data.Dataset, batch_size: int | None = None, *, samples: Any = None
) -> tuple[tf.data.Dataset, np.ndarray[Any, np.dtype[np.int64]]]:
    """The images of a balanced dataset, each once, in the order of `file_paths`.

    Decoded exactly as the dataset decodes them (same size, color mode, interpolation,
    crop / pad, data format). The dataset's sampler is not used, so its epoch does not move.
    Files already found unreadable (`dataset.skipped_files`) are left out, with a warning.

    Args:
        dataset: A dataset returned by `balanced_image_dataset_from_directory` or
            `balanced_image_dataset_from_paths`.
        batch_size: Images per batch. Defaults to the dataset's P x K.
        samples: Positions in `dataset.file_paths` to read instead of every file, in the
            order given (e.g. a sample of each class).

    Returns:
        `(images, labels)`: a `tf.data.Dataset` of float32 image batches, and the int64
        labels of its samples in the same order.

    Raises:
        TypeError: If `dataset` is not such a dataset, or `samples` not integer positions.
        ValueError: If `batch_size` is not an int >= 1 or a position is outside
            `file_paths`.
    """
    return _sequential(dataset, _check_batch_size(batch_size), samples)


def _sequential(
    dataset: Any, batch_size: int | None, samples: object = None
) -> tuple[tf.data.Dataset, np.ndarray[Any, np.dtype[np.int64]]]:
    """`sequential_dataset` with its batch size checked."""
    if not is_balanced_dataset(dataset):
        raise TypeError(
            "`dataset` must be a dataset returned by `balanced_image_dataset_from_directory` "
            f"or `balanced_image_dataset_from_paths`. Received: dataset={dataset!r}"
        )
    pipeline = _pipeline(dataset)
    kept = _kept_samples(dataset, samples)
    labels = np.asarray(dataset.sampler.labels, dtype=np.int64)[kept]
    size = batch_size or dataset.sampler.batch_size
    if len(kept) == 0:
        raise ValueError("`dataset` has no loadable file: there is nothing to embed.")
    plans = PlanTable.from_batches([kept[i : i + size] for i in range(0, len(kept), size)])
    # The dataset's own decoding and bad-file guard, without its labels.
    images = attrs.evolve(pipeline, label_mode=None, batch_size=plans.batch_size)
    images_ds = images.build(plans.dataset())
    return images_ds, labels


def _as_label_vector(labels: Any) -> np.ndarray[Any, Any]:
    """Labels of one batch as a vector; one-hot rows become their class index."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] > 1:
        if not (np.isin(array, (0, 1)).all() and (array.sum(axis=1) == 1).all()):
            raise ValueError(
                "Labels of shape (batch, C) must be one-hot (categorical) rows. Received: "
                f"labels of shape {array.shape} that are not one-hot"
            )
        indices: np.ndarray[Any, Any] = np.argmax(array, axis=1)
        return indices
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            "Labels must have shape (batch,), (batch, 1) or be one-hot (batch, C). "
            f"Received: labels of shape {array.shape}"
        )
    return array


def _embed_batch(model: keras.Model, inputs: Any) -> np.ndarray[Any, Any]:
    output = model.predict_on_batch(inputs)
    if not isinstance(output, np.ndarray) or output.ndim != 2:
        shape = getattr(output, "shape", type(output).__name__)
        raise ValueError(
            "The model must output one embedding per sample, a tensor of shape (batch, dim). "
            f"Received an output of shape {shape}"
        )
    return output


def _pairs(dataset: tf.data.Dataset) -> Iterator[tuple[Any, Any]]:
    for element in dataset:
        if not isinstance(element, tuple) or len(element) not in (2, 3):
            raise ValueError(
                "`dataset` must yield `(images, labels)` batches (or `(images, labels, "
                "sample_weights)`, whose weights are not used). Received an element of type "
                f"{type(element).__name__}"
                + (f" with {len(element)} parts" if isinstance(element, tuple) else "")
            )
        yield element[0], element[1]


def embed_dataset(
    model: keras.Model, dataset: Any, *, batch_size: int | None = None, samples: Any = None
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Embeds every sample of `dataset` once, in order, with the model in inference mode.

    ```python
    embeddings, labels = embed_dataset(model, val_ds)
    retrieval_metrics(embeddings, labels)
    ```

    Args:
        model: A Keras model mapping a batch of images to embeddings `(batch, dim)`.
        dataset: A balanced dataset (its files are read once each in the order of
            `dataset.file_paths`, see `sequential_dataset`; its P x K plan is not used and
            its epoch does not move), any batched `tf.data.Dataset` of `(images, labels)`
            or `(images, labels, sample_weights)` (one pass; one-hot labels become class
            indices), or a tuple `(images, labels)` of arrays.
        batch_size: Images per batch for a balanced dataset or arrays (default: the
            dataset's P x K; 64 for arrays). Other datasets keep their own batches.
        samples: A balanced dataset only: positions in `dataset.file_paths` to embed
            instead of every file, in the order given (see `sequential_dataset`).

    Returns:
        `(embeddings, labels)`: the model's outputs `(N, dim)` and the N labels.

    Raises:
        TypeError: If `dataset` is none of the above, or `samples` is given for another
            kind of dataset or is not integer positions.
        ValueError: If the model's output is not `(batch, dim)`, labels have a shape that
            is not a label vector or one-hot, or a file cannot be loaded (named).
    """
    size = _check_batch_size(batch_size)
    outputs: list[np.ndarray[Any, Any]] = []
    if samples is not None and not is_balanced_dataset(dataset):
        raise TypeError(
            "`samples` selects files of a balanced dataset; this dataset is not one. "
            f"Received: dataset of type {type(dataset).__name__}"
        )
    if is_balanced_dataset(dataset):
        images, labels = _sequential(dataset, size, samples)
        batches = iter(images)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except tf.errors.InvalidArgumentError as error:
                # The pipeline's own message names the file and what is wrong with it.
                raise ValueError(
                    f"Cannot embed the dataset: {error.message.strip()} Remove the file or "
                    "build the dataset with `verify_images=True` or `on_bad_image='skip'`."
                ) from None
            outputs.append(_embed_batch(model, batch))
        return _concatenate(outputs, len(labels)), labels
    if isinstance(dataset, tuple) and len(dataset) == 2:
        images_array, labels_array = dataset
        pairs: Any = tf.data.Dataset.from_tensor_slices((images_array, labels_array)).batch(
            size or _DEFAULT_BATCH_SIZE
        )
    elif isinstance(dataset, tf.data.Dataset):
        pairs = dataset
    else:
        raise TypeError(
            "`dataset` must be a balanced dataset, a batched `tf.data.Dataset` of "
            "`(images, labels)` or a tuple `(images, labels)` of arrays. "
            f"Received: dataset of type {type(dataset).__name__}"
        )
    label_batches = []
    for inputs, batch_labels in _pairs(pairs):
        outputs.append(_embed_batch(model, inputs))
        label_batches.append(_as_label_vector(batch_labels))
    label_vector = np.concatenate(label_batches) if label_batches else np.zeros(0, np.int64)
    return _concatenate(outputs, len(label_vector)), label_vector


def _concatenate(outputs: list[np.ndarray[Any, Any]], count: int) -> np.ndarray[Any, Any]:
    if not outputs:
        raise ValueError("`dataset` is empty: there is nothing to embed.")
    embeddings = np.concatenate(outputs)
    if len(embeddings) != count:
        raise ValueError(
            f"The model returned {len(embeddings)} embeddings for {count} samples: it must "
            "output one embedding per input image."
        )
    return embeddings
