"""kerasgen 0.1.3's import path: `balanced_image_dataset_from_directory`.

```python
from kerasgen.balanced_image_dataset import balanced_image_dataset_from_directory

train_ds = balanced_image_dataset_from_directory(
    directory, num_classes_per_batch=2, num_images_per_class=5,
    image_size=(256, 256), validation_split=0.2, subset="training",
    seed=555, safe_triplet=True)
```

The function is `kerasgen_tf.balanced_image_dataset_from_directory`, which
takes the 0.1.3 arguments in the same order and with the same meaning, and
more. The 0.1.3 keyword `smart_resize` is still accepted as an alias of
`crop_to_aspect_ratio`.
"""

from __future__ import annotations

import functools
from typing import Any

from balanced_sampler import ALLOWED_FORMATS
from kerasgen_tf import balanced_image_dataset_from_directory as _from_directory

__all__ = ["ALLOWLIST_FORMATS", "balanced_image_dataset_from_directory"]

ALLOWLIST_FORMATS = ALLOWED_FORMATS
"""The file extensions indexed (0.1.3's list plus ".webp")."""


@functools.wraps(_from_directory)
def balanced_image_dataset_from_directory(*args: Any, **kwargs: Any) -> Any:  # noqa: D103
    if "smart_resize" in kwargs:
        if "crop_to_aspect_ratio" in kwargs:
            raise TypeError(
                "Pass `crop_to_aspect_ratio` or its old alias `smart_resize`, not both. "
                f"Received: smart_resize={kwargs['smart_resize']!r}, "
                f"crop_to_aspect_ratio={kwargs['crop_to_aspect_ratio']!r}"
            )
        kwargs["crop_to_aspect_ratio"] = kwargs.pop("smart_resize")
    return _from_directory(*args, **kwargs)
