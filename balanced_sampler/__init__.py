"""Framework-free balanced P x K batch sampling for metric learning.

This package depends on numpy and attrs only. It never imports TensorFlow,
PyTorch or Keras, so the sampling logic can be reused from any framework and
tested without one.
"""

from balanced_sampler.checks import check_sampler_options
from balanced_sampler.indexing import ALLOWED_FORMATS, IndexingWarning, index_directory
from balanced_sampler.sampler import BalancedBatchSampler, SamplerWarning
from balanced_sampler.splitting import split
from balanced_sampler.stats import HardBatchStats, PlanStats, plan_stats

__all__ = [
    "ALLOWED_FORMATS",
    "BalancedBatchSampler",
    "HardBatchStats",
    "IndexingWarning",
    "PlanStats",
    "SamplerWarning",
    "check_sampler_options",
    "index_directory",
    "plan_stats",
    "split",
]
