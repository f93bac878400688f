"""Behaviour across processes: same seed same batches; no TensorFlow, clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from kerasgen_tf import balanced_image_dataset_from_directory

PLAY_TWO_EPOCHS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from kerasgen_tf import balanced_image_dataset_from_directory

    ds = balanced_image_dataset_from_directory(
        sys.argv[1], 2, 2, image_size=5, seed=2024, verbose=False
    )
    out = []
    for _ in range(2):
        out.append([
            [labels.numpy().tolist(), float(np.round(images.numpy().sum(), 2))]
            for images, labels in ds
        ])
    print(json.dumps(out))
    """
)


def run_python(code, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_same_seed_same_batches_in_a_new_process(class_tree):
    result = run_python(PLAY_TWO_EPOCHS, class_tree)
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout.strip().splitlines()[-1])

    ds = balanced_image_dataset_from_directory(
        class_tree, 2, 2, image_size=5, seed=2024, verbose=False
    )
    ours = [
        [
            [labels.numpy().tolist(), float(np.round(images.numpy().sum(), 2))]
            for images, labels in ds
        ]
        for _ in range(2)
    ]
    assert ours == theirs
    assert ours[0] != ours[1]


def test_without_tensorflow_the_error_names_the_extra():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # as if TensorFlow were not installed
        import kerasgen, balanced_sampler  # these need no TensorFlow
        for name in ("kerasgen_tf", "kerasgen.balanced_image_dataset"):
            try:
                __import__(name)
            except ImportError as error:
                print(name, "->", error)
            else:
                print(name, "imported")
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert 'pip install "kerasgen[tensorflow]"' in line, line
