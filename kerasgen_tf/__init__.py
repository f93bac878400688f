"""kerasgen_tf: balanced P x K image batches as a `tf.data.Dataset`.

The TensorFlow adapter of `balanced_sampler`: the sampler plans each epoch,
this package reads, decodes and resizes the images of every planned batch
exactly as Keras' `image_dataset_from_directory` would.

```python
from kerasgen_tf import balanced_image_dataset_from_directory

train_ds = balanced_image_dataset_from_directory(
    "data/", num_classes_per_batch=8, num_images_per_class=4,
    image_size=(224, 224), validation_split=0.2, subset="training", seed=555)
model.fit(train_ds, epochs=10)  # len(train_ds) steps per epoch, reshuffled
```
"""

try:
    import tensorflow as _tf  # noqa: F401 (only checks that TensorFlow is there)
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "kerasgen_tf needs TensorFlow, which is not installed. Install it with the "
        'kerasgen extra: pip install "kerasgen[tensorflow]"'
    ) from error

from kerasgen_tf import evaluation, hard_classes, losses
from kerasgen_tf._bad_images import BadImageWarning
from kerasgen_tf.dataset_from_directory import balanced_image_dataset_from_directory
from kerasgen_tf.dataset_from_paths import balanced_image_dataset_from_paths
from kerasgen_tf.hard_classes import ClassNeighborRefresh

__all__ = [
    "BadImageWarning",
    "ClassNeighborRefresh",
    "balanced_image_dataset_from_directory",
    "balanced_image_dataset_from_paths",
    "evaluation",
    "hard_classes",
    "losses",
]
