"""``python -m fcnlab.bench``: every model's speed against this machine's measured limit.

For each model row (network × input size × batch × width): training iterations/s and images/s
(forward, loss, backward and SGD step; median of a few steps after warm-up), evaluation images/s,
peak memory, forward+backward GFLOP per image (torch's FLOP counter), achieved GFLOP/s and its
share of the dense fp32 matrix-multiply peak measured in the same run. Then: FCN-8s ``aligned``
vs ``caffe`` geometry, the data pipeline's rate against what the training step consumes, the
confusion-matrix and BF updates as a share of an evaluation batch, and the patch-wise
classifier against the dense network (:mod:`fcnlab.models.patchwise`). Presets: ``tiny``
(seconds, for tests), ``small`` (default, embedded scale, minutes on a 2-core CPU), ``paper``
(full width, the papers' sizes; for a GPU). On a CUDA machine the same command reports GPU numbers.

Timings on a shared machine are noisy: compare ratios measured in one run, not across runs.
"""

from fcnlab.bench.suite import PRESETS, Preset, Row

__all__ = ["PRESETS", "Preset", "Row"]
