"""kerasgen: balanced P x K batches of images for metric learning.

Two layers:

- `balanced_sampler`: the framework-free sampler (numpy + attrs), usable as a
  PyTorch `batch_sampler`;
- `kerasgen_tf`: the `tf.data` adapter,
  `kerasgen_tf.balanced_image_dataset_from_directory` and
  `kerasgen_tf.balanced_image_dataset_from_paths`.

Code written for kerasgen 0.1.3 keeps working unchanged:

```python
from kerasgen.balanced_image_dataset import balanced_image_dataset_from_directory
```

Importing `kerasgen` itself does not import TensorFlow.
"""

__version__ = "0.2.0.dev0"
__all__: list[str] = []
