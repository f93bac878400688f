"""The PyTorch tests: `BalancedBatchSampler` as a `DataLoader` batch sampler.

Every test in this folder needs torch; without it the folder is skipped.
The sampler itself never imports torch.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
