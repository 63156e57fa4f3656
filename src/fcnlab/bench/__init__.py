"""``python -m fcnlab.bench``: every model's speed against this machine's measured limit.

For each model row (network × input size × batch × width): training iterations/s and images/s
(forward, loss, backward and SGD step; median of a few steps after warm-up), evaluation images/s,
peak memory, forward+backward GFLOP per image (torch's FLOP counter), achieved GFLOP/s and its
share of the dense fp32 matrix-multiply peak measured in the same run. Then: FCN-8s ``aligned``
vs ``caffe`` geometry, the data pipeline's rate against what the training step consumes, the
confusion-matrix and BF updates as a share of an evaluation batch, and the patch-wise
classifier against the dense network (:mod:`fcnlab.bench.patchwise`). Presets: ``tiny``
(seconds, for tests), ``small`` (default, embedded scale, minutes on a 2-core CPU), ``paper``
(full width, the papers' sizes; for a GPU), ``memory`` (the memory targets' row only). On a CUDA
machine the same command reports GPU numbers. The performance targets that a run measures
(docs/benchmark.md, "Targets") are listed at the end, met or MISSED, with the profile's top ops for a missed one.

Timings on a shared machine are noisy: compare ratios measured in one run, not across runs.

On a GPU, ``scripts/gpu_check.sh`` (:mod:`fcnlab.bench.gpu_check`) times the paper-scale rows
through the fast paths and a short full-width training run, each phase under a time limit.

Options beyond the presets (``python -m fcnlab.bench --help``):

* ``--rows NAME ...``: only these rows; a preset's *extra* rows run only when named:
  ``fcn8s_caffe_full`` (full width, 256×256, batch 1) and ``fcn8s_caffe_500x375_full`` in
  ``small``. ``--skip rows`` leaves the model rows out (e.g. for a peer comparison alone).
* ``--fast channels_last bf16 fp16 compile`` (``+`` combines: ``channels_last+bf16``): for each
  row also a variant row ``<row>+cl`` / ``+bf16`` / ``+fp16`` / ``+compile`` run through
  :mod:`fcnlab.fastpath` (``prepare``, ``to_input``, ``autocast``); FLOPs are counted on the
  plain fp32 path (the same arithmetic); a ``compile`` row's first calls (compilation, per mode)
  are timed apart, not in its it/s. A variant that fails here (no compiler, ...) is a row with
  an ``error``, not a failed run. ``--rows fcn8s_caffe+cl`` names one variant directly.
* ``--profile`` (``--profile-steps 2 --profile-top 8``): ``torch.profiler`` over training steps
  of each row (after its timed steps, so the timings are unaffected): the top ops by self time
  (CPU self time on the CPU, device self time on CUDA) and their share of all ops' self time.
* ``--peer MODULE:CALLABLE`` (``torchfcn.models:FCN8s`` from ``sys.path``, or
  ``path/to/fcn8s.py:FCN8s``; see :mod:`fcnlab.bench.peer`) with ``--peer-kwargs JSON``,
  ``--peer-row NAME`` (the preset's ``peer_row`` by default: ``fcn8s_caffe_full`` in ``small``)
  and ``--peer-reps N``: a reference implementation of the same network, built by that call,
  against our row on the same batch; the same training step and evaluation forward, reps
  interleaved (A B, B A, ...); both medians and the speed ratio ours/peer (>= 1: ours is at
  least as fast). Our net takes the peer's class count; the output shapes must agree. The
  reference PyTorch FCN port (wkentaro/pytorch-fcn) has full width, 21 classes, padding 100 and
  ceil-mode pooling: ``--peer .../torchfcn/models/fcn8s.py:FCN8s --peer-kwargs '{"n_class":
  21}' --peer-row fcn8s_caffe_full --skip rows data metrics patchwise``.
* ``--preset memory``: only the memory targets' row (full-width caffe FCN-8s, 500×375,
  batch 1; one to two minutes on a 2-core CPU): the training step's peak host memory against
  6 GiB, and what each image in a batch adds to evaluation's peak (slope between batches 2 and
  4 of the same size) against one image's activations: evaluation keeps no activations beyond
  the layers at hand, whatever the size.

JSON (``--out``) keys:

* ``machine``: ``device``, ``name``, ``threads``, ``torch``, ``python``, ``matmul_peak``
  (``n``, ``reps``, ``dtype``, ``best_s``, ``gflops``). ``preset``, ``config`` (the preset,
  ``rows`` and ``extra_rows`` included). ``wall_s``.
* ``rows[]``: ``name``, ``model``, ``input_hw`` [H, W], ``batch``, ``width``, ``net`` (model.net
  overrides), ``fast`` (fastpath settings, {} = plain); ``train_step_s`` (each timed step),
  ``train_step_s_median``, ``train_iters_per_s``, ``train_images_per_s``; ``eval_batch_s``,
  ``eval_images_per_s``; ``peak_mem_mib`` (training: peak over the row's build, FLOP-counting
  step, warm-up and timed steps, minus the memory in use before it; ``peak_mem_method``:
  ``VmHWM`` / ``ru_maxrss`` on the CPU, ``cuda.max_memory_allocated`` on CUDA);
  ``eval_peak_mem_mib`` (evaluation forwards, above what training left allocated — which on the
  CPU includes oneDNN's transient reordered weights, e.g. fc6's 392 MiB at full width) and
  ``eval_peak_mem_mib_per_image``; ``activation_mib_per_image`` (the outputs of the leaf modules
  in one forward, in-place ones once: about what training keeps for the backward);
  ``eval_peak_mem_mib_extra_image`` (memory-target rows only, else null: how much each image in
  the batch raises evaluation's peak: the slope between batches 2 and 4); ``gflop_per_image`` (forward+backward),
  ``eval_gflop_per_image``, ``achieved_gflops``, ``pct_of_matmul_peak``. Optional:
  ``compile_s`` {``train``, ``eval``} (first-call seconds), ``vs_plain`` {``row``,
  ``train_speedup``, ``eval_speedup``} (a fast variant against its plain row), ``profile``
  (below), ``error`` (a fast variant that failed; then only the identifying keys).
* ``profile``: ``steps``, ``by`` (``self_cpu`` / ``self_cuda``), ``step_s`` (wall per step under
  the profiler), ``total_self_ms`` (per step), ``top[]``: ``op``, ``self_ms`` (per step),
  ``share_pct`` (of all ops' self time), ``calls`` (per step).
* ``aligned_vs_caffe``: ``input_hw``, ``batch``, ``width``, ``train_speedup``, ``eval_speedup``,
  ``flop_ratio``.
* ``peer`` (with ``--peer``): ``spec``, ``kwargs``, ``row``, ``model``, ``net``, ``fast``,
  ``input_hw``, ``batch``, ``width``, ``num_classes``, ``ours_output_shape``,
  ``peer_output_shape``, ``output_shapes_agree``, ``ours_params``, ``peer_params``,
  ``params_agree``, ``reps``, ``order``; ``{ours,peer}_train_step_s`` (each rep) and
  ``..._median``, ``{ours,peer}_eval_batch_s`` and ``..._median``; ``train_speed_ratio`` and
  ``eval_speed_ratio`` (peer median / our median: ours/peer in speed), ``..._paired`` (median
  of the per-rep ratios); optional ``compile_s``; ``profile`` {``ours``, ``peer``,
  ``ours_eval``, ``peer_eval``} with ``--profile``.
* ``data_pipeline``, ``metrics_cost``, ``patchwise_vs_dense``: as printed (see
  :mod:`fcnlab.bench.extras`).
* ``targets[]``: the performance targets this run measured: ``target``, ``row``, ``value``, ``unit``
  (``MiB`` or ``x``), ``limit``, ``met``; ``measured_by`` (memory); ``limited_by[]`` (``op``,
  ``share_pct``: the top ops of the row's profile, with ``--profile``).
"""

# The rows import neither torch nor Hydra: the GPU check (fcnlab.bench.gpu_check) still starts
# without them, to say which packages a machine lacks.
from fcnlab.bench.rows import PRESETS, Preset, Row

__all__ = ["PRESETS", "Preset", "Row"]
