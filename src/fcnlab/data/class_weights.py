"""Median-frequency class balancing (SegNet; docs/reference.md §3), cached next to the data.

``weight_c = median(freq) / freq_c`` with ``freq_c`` = pixels of class c / total pixels of the
images that contain c. Void pixels (``ignore_index``) count in neither. The median is taken over
the classes that occur; a class absent from every label gets weight 0.0 (it has no pixels to
weight) and a warning.

The result is cached in ``<cache_dir>/fcnlab_class_weights.json``, keyed by the split name, a hash
of the id list, the number of classes and the void index; a second call returns the cached
weights without reading a label. A cache folder that cannot be written is only a warning. The key
does not cover file contents: delete the JSON file after editing labels in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fcnlab.data.dataset import SegmentationDataset, read_label
from fcnlab.errors import ConfigError
from fcnlab.progress import track

log = logging.getLogger(__name__)

CACHE_FILE = "fcnlab_class_weights.json"
CLASS_WEIGHT_KINDS = (None, "median_freq", "[w_0, ..., w_K-1]")


def frequencies_from_counts(counts: np.ndarray) -> np.ndarray:
    """``freq_c`` from per-image pixel counts (images x classes, void excluded); NaN if absent."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(1, keepdims=True)  # non-void pixels of each image
    present = counts > 0
    denom = (present * totals).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, counts.sum(0) / denom, np.nan)


def weights_from_frequencies(freq: np.ndarray) -> list[float]:
    freq = np.asarray(freq, dtype=np.float64)
    present = np.isfinite(freq) & (freq > 0)
    if not present.any():
        raise ValueError("no class occurs in the labels: median-frequency weights are undefined")
    median = float(np.median(freq[present]))
    return [median / f if ok else 0.0 for f, ok in zip(freq.tolist(), present.tolist())]


def _cache_key(split: str, ids: Sequence[str], num_classes: int, ignore_index: int) -> str:
    digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
    return f"{split}-{digest}-k{num_classes}-void{ignore_index}"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def median_frequency_weights(source, num_classes: int, ignore_index: int = 255, *,
                             void_values: Sequence[int] = (), cache_dir=None,
                             split: str | None = None) -> list[float]:
    """SegNet's median-frequency weights of a dataset or a list of label paths (PNG or .mat).

    A :class:`SegmentationDataset` brings its own void mapping and cache folder (``cache_dir``
    overrides it); for a list of paths the cache is used only when ``cache_dir`` is given.
    """
    if isinstance(source, SegmentationDataset):
        ids = source.ids
        paths = source.mask_paths
        void_values = source.void_values or tuple(void_values)
        cache_dir = cache_dir if cache_dir is not None else source.cache_dir
        split = split or source.name
    else:
        paths = [Path(p) for p in source]
        ids = [str(p) for p in paths]
        split = split or "paths"
    if not paths:
        raise ValueError("median_frequency_weights: no labels given")
    key = _cache_key(split, ids, num_classes, ignore_index)
    cache = Path(cache_dir) / CACHE_FILE if cache_dir is not None else None
    if cache is not None:
        entry = _read_cache(cache).get(key)
        if isinstance(entry, dict) and len(entry.get("weights", ())) == num_classes:
            log.info("class weights for %s read from %s", split, cache)
            return [float(w) for w in entry["weights"]]

    counts = np.zeros((len(paths), num_classes), np.int64)
    # Reads every label of the split once: minutes for a large training set, hence the progress.
    for i, path in enumerate(track(paths, f"class weights ({split})", unit="labels")):
        mask = read_label(path, num_classes, ignore_index, void_values)
        counts[i] = np.bincount(mask.ravel(), minlength=256)[:num_classes]
    freq = frequencies_from_counts(counts)
    weights = weights_from_frequencies(freq)
    absent = [c for c, f in enumerate(freq.tolist()) if not f > 0]
    if absent:
        log.warning("classes %s never occur in %s: their median-frequency weight is 0", absent,
                    split)
    if cache is not None:
        data = _read_cache(cache)
        data[key] = {"split": split, "num_images": len(paths), "weights": weights,
                     "frequencies": [None if not f > 0 else f for f in freq.tolist()],
                     "pixels": counts.sum(0).tolist()}
        try:
            tmp = cache.with_name(cache.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            tmp.replace(cache)
        except OSError as e:
            log.warning("cannot cache class weights in %s: %s", cache, e)
    return weights


def validate_weight_list(weights, num_classes: int) -> list[float]:
    """A user-given weight list: exactly ``num_classes`` finite positive numbers."""
    if (isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence)
            or len(weights) != num_classes
            or not all(isinstance(w, numbers.Real) and not isinstance(w, bool)
                       and math.isfinite(w) and w > 0 for w in weights)):
        raise ConfigError(f"loss.class_weights: expected null, 'median_freq' or a list of "
                          f"{num_classes} positive numbers (one per class), got {weights!r}")
    return [float(w) for w in weights]
