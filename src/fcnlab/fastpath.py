"""Fast paths that keep the answers: channels-last memory format, mixed precision, torch.compile.

Each is a switch that changes how the numbers are computed, not which numbers the network is
meant to compute; ``tests/test_fast_paths.py`` checks logits, loss (and gradients) against the
plain fp32 path within stated tolerances. Training and evaluation take them from the config:

* ``fast.channels_last=true``   -> :func:`prepare` (weights) + :func:`to_input` (each batch)
* ``fast.compile=true`` or a dict of ``torch.compile`` keyword arguments -> :func:`prepare`
* ``trainer.precision=bf16-mixed`` (or ``16-mixed`` on a GPU): Lightning's own autocast; the
  same context outside Lightning (the benchmark) is :func:`autocast`.

They are GPU paths. Measured on the 2-core CPU this project was developed on (no bf16 units,
no tensor cores): bf16 autocast ran 4-11x *slower* than fp32, torch.compile was slower even after
a 47-98 s compilation (and failed on SegNet when the input shape changed), channels-last was
within +-15% either way. On a GPU, channels-last lets cuDNN pick its NHWC kernels (no layout
transposes around each convolution, tensor cores with bf16/fp16), autocast halves the memory
traffic and uses the tensor cores, and torch.compile fuses the elementwise tails (BN, ReLU,
dropout, crops). They must be correct everywhere and are only worth switching on where they are
fast: measure with ``python -m fcnlab.bench`` on the target machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

# Lightning's precision names (``trainer.precision``) -> the autocast dtype, None = plain fp32.
PRECISIONS: dict[str, torch.dtype | None] = {
    "32": None,
    "32-true": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


def compile_options(compile: bool | Mapping | None) -> dict | None:
    """The ``torch.compile`` keyword arguments a ``compile`` switch asks for, or None for off.

    ``False``/``None`` -> None; ``True`` -> ``{}`` (torch's defaults); a mapping -> a plain copy
    (e.g. ``{"mode": "max-autotune", "dynamic": True}``).
    """
    if compile is None or compile is False:
        return None
    if compile is True:
        return {}
    if isinstance(compile, Mapping):
        return dict(compile)
    raise ValueError(f"compile: expected false, true or a dict of torch.compile keyword "
                     f"arguments, got {compile!r}")


def prepare(net: nn.Module, *, channels_last: bool = False,
            compile: bool | Mapping = False) -> nn.Module:
    """Switch ``net`` onto the fast paths, in place; returns the module to call (``net`` itself).

    ``channels_last``: 4-D weights are restrided to NHWC (``net.to(memory_format=...)``); feed it
    inputs through :func:`to_input`. The values are the same; the convolution kernels differ, so
    results agree to float rounding (~1e-6 relative), not bit for bit. Cost: nothing on a GPU
    (faster with cuDNN's NHWC kernels, most with bf16/fp16); +-15% on the development CPU.

    ``compile``: ``nn.Module.compile`` (``torch.compile`` of the module's call), so the parameter
    names, ``state_dict`` keys and checkpoints stay those of the plain module, unlike
    ``torch.compile(net)`` which wraps it (``_orig_mod.`` prefixes). Compilation happens lazily at
    the first call and again for each new mode (train/eval) or input shape, so time the first
    call separately. Cost: 47-98 s of compilation and no speed-up on the development CPU.
    """
    options = compile_options(compile)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    if options is not None:
        net.compile(**options)
    return net


def to_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A 4-D N x C x H x W batch in the memory format the prepared network expects.

    Same values and shape; with ``channels_last`` the strides are NHWC (a copy unless it already
    is). Without it ``x`` is returned as it is.
    """
    if not channels_last:
        return x
    if x.dim() != 4:
        raise ValueError(f"channels_last: expected a 4-D N x C x H x W batch, got shape "
                         f"{tuple(x.shape)}")
    return x.contiguous(memory_format=torch.channels_last)


def autocast(device_type: str, precision: str):
    """The autocast context of a Lightning precision name, for code that runs outside Lightning.

    ``"bf16-mixed"`` / ``"16-mixed"``: ``torch.autocast(device_type, dtype=bf16 / fp16)``;
    convolutions and matmuls run in the low precision, losses and softmax in fp32.
    ``"32"`` / ``"32-true"``: a no-op context. Anything else: ValueError.
    bf16 on the development CPU (no bf16 units) was 4-11x slower than fp32; on GPUs with tensor
    cores (Ampere and later) it is the fast path and needs no loss scaling, unlike fp16.
    """
    name = str(precision)
    if name not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(map(repr, PRECISIONS))}, "
                         f"got {precision!r}")
    dtype = PRECISIONS[name]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)
