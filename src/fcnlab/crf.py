"""Dense CRF post-processing (Krähenbühl & Koltun, NIPS 2011), as in DeepLab-LargeFOV-denseCRF.

A fully connected CRF over the pixels of one image: the network's softmax gives the unary term
(``-log p``), and two Gaussian pairwise kernels (Potts compatibility) pull labels together:

* *appearance* (bilateral) kernel ``w1 · exp(-|p_i - p_j|² / 2θα² - |I_i - I_j|² / 2θβ²)``: nearby
  pixels of similar colour should agree, which snaps coarse boundaries to image edges;
* *smoothness* (Gaussian) kernel ``w2 · exp(-|p_i - p_j|² / 2θγ²)``: removes small isolated regions.

Mean-field inference, 10 iterations (docs/reference.md §2, DeepLab-LargeFOV). The numbers:

* DeepLab v1 (Chen et al., ICLR 2015, §4, experimental setup): ``w2 = 3`` and ``θγ = 3`` are kept
  at the defaults of Krähenbühl's code; ``w1``, ``θα``, ``θβ`` were grid-searched on 100 held-out
  VOC 2012 val images (quoted from our reading of the paper; the paper's text was not at hand
  to re-check when this was written).
* The values of that search for DeepLab-LargeFOV, as published with the DeepLab v1 release
  (per-model CRF settings "FOV: bi_w = 4, bi_xy_std = 121, bi_rgb_std = 5, pos_w = 3,
  pos_xy_std = 3", reproduced in several third-party DeepLab ports) are the defaults below. We
  could not check them against the original release page itself.
* They were found for PASCAL VOC (~500×500 images). The SegNet benchmark's CamVid/SUN row also
  grid-searched them, on a subset of the training set since it had no validation set (SegNet
  TPAMI 2017 §4.1; docs/reference.md §2), but does not publish its values, so for other data
  re-run the search (``θα`` is in pixels at the evaluated resolution, ``θβ`` in 0–255 RGB
  units).

The CRF is optional: it needs ``pydensecrf2`` (``pip install "fcnlab[crf]"``), imported as
``pydensecrf``; everything here imports it lazily, so the rest of fcnlab works without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from fcnlab.errors import ConfigError

MISSING_MESSAGE = 'dense CRF needs the optional extra: pip install "fcnlab[crf]" (pydensecrf2)'


def require_crf():
    """The ``pydensecrf.densecrf`` module, or a one-line ConfigError saying how to install it."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as e:
        raise ConfigError(MISSING_MESSAGE) from e
    return dcrf


def crf_available() -> bool:
    try:
        require_crf()
    except ConfigError:
        return False
    return True


@dataclass(frozen=True)
class CRFConfig:
    """Dense CRF parameters; defaults: DeepLab-LargeFOV's (see the module docstring)."""

    iterations: int = 10  # mean-field iterations (DeepLab: 10)
    gaussian_sxy: float = 3.0  # θγ, pixels (Krähenbühl's default, fixed in DeepLab)
    gaussian_compat: float = 3.0  # w2 (Krähenbühl's default, fixed in DeepLab)
    bilateral_sxy: float = 121.0  # θα, pixels (DeepLab-LargeFOV grid search, VOC)
    bilateral_srgb: float = 5.0  # θβ, 0-255 RGB units (DeepLab-LargeFOV grid search, VOC)
    bilateral_compat: float = 4.0  # w1 (DeepLab-LargeFOV grid search, VOC)

    def __post_init__(self):
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) \
                or self.iterations < 1:
            raise ConfigError(f"crf.iterations: expected an int >= 1, got {self.iterations!r}")
        for name in ("gaussian_sxy", "gaussian_compat", "bilateral_sxy", "bilateral_srgb",
                     "bilateral_compat"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"crf.{name}: expected a number > 0, got {value!r}")

    @classmethod
    def from_dict(cls, cfg: dict | None) -> CRFConfig:
        """From a (Hydra) mapping; unknown keys are a ConfigError naming them."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"crf: unknown keys {unknown}; expected some of "
                              f"{sorted(cls.__dataclass_fields__)}")
        return cls(**cfg)


def dense_crf(probs: np.ndarray, image: np.ndarray, *, iterations: int = 10,
              gaussian_sxy: float = 3.0, gaussian_compat: float = 3.0,
              bilateral_sxy: float = 121.0, bilateral_srgb: float = 5.0,
              bilateral_compat: float = 4.0) -> np.ndarray:
    """Refine one image's class probabilities with a fully connected CRF.

    Args:
        probs: K × H × W softmax probabilities (any float dtype; each pixel sums to 1).
        image: H × W × 3 uint8 RGB, the image the probabilities are for (e.g. ``denormalize``).
        iterations, gaussian_*, bilateral_*: see :class:`CRFConfig` (defaults: DeepLab-LargeFOV).

    Returns:
        H × W int64 labels: the argmax of the CRF's approximate posterior.
    """
    dcrf = require_crf()
    CRFConfig(iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb,
              bilateral_compat)  # validates
    probs = np.asarray(probs)
    image = np.asarray(image)
    if probs.ndim != 3 or probs.shape[0] < 2 or not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"dense_crf: expected K × H × W float probabilities with K >= 2, got "
                         f"{probs.dtype} {probs.shape}")
    k, h, w = probs.shape
    if image.shape != (h, w, 3) or image.dtype != np.uint8:
        raise ValueError(f"dense_crf: expected an H × W × 3 uint8 RGB image of size {h} × {w}, "
                         f"got {image.dtype} {image.shape}")
    # Unary = -log p (clipped so a hard zero is a large finite cost), K × (H·W), C-contiguous f32.
    unary = -np.log(np.clip(probs.astype(np.float32), 1e-8, 1.0)).reshape(k, h * w)
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb,
                             rgbim=np.ascontiguousarray(image), compat=bilateral_compat)
    q = np.asarray(crf.inference(iterations), dtype=np.float32).reshape(k, h, w)
    return q.argmax(0).astype(np.int64)


def crf_predict(logits: torch.Tensor, images: torch.Tensor, *, preprocess: str = "caffe",
                config: CRFConfig | dict | None = None) -> torch.Tensor:
    """Batch helper for evaluation: N × K × H × W logits and the N × 3 × H × W network input
    (in the ``preprocess`` convention) -> N × H × W int64 labels on the logits' device.

    Per image, on the CPU: softmax, :func:`~fcnlab.data.transforms.denormalize` back to uint8 RGB,
    :func:`dense_crf`.
    """
    from fcnlab.data.transforms import denormalize

    require_crf()
    cfg = config if isinstance(config, CRFConfig) else CRFConfig.from_dict(config)
    if logits.dim() != 4 or images.dim() != 4 or logits.shape[0] != images.shape[0] \
            or logits.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"crf_predict: expected N × K × H × W logits and N × 3 × H × W images of "
                         f"the same N, H, W; got {tuple(logits.shape)} and {tuple(images.shape)}")
    probs = torch.softmax(logits.detach().float(), dim=1).cpu().numpy()
    labels = [dense_crf(p, denormalize(img, preprocess), **asdict(cfg))
              for p, img in zip(probs, images)]
    return torch.from_numpy(np.stack(labels)).to(logits.device)
