"""The embedded ImageNet cache (fcnlab.tasks.features; `model.pretrained: embedded_imagenet`).

debug=fast shrinks the recipe (16 images, 4 iterations), so each build takes seconds. Checked:
the first run builds the classifier into ${paths.data_dir}/embedded_imagenet/<key>/ and loads it,
a second run (another seed) reuses the same file, a run that reuses it trains exactly as the run
that built it (the build does not move the run's random state), a changed recipe is another key,
and a file whose SHA-256 is not the recorded one stops the run naming the file and both hashes.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import compose_cfg
from fcnlab.errors import DataError
from fcnlab.models.weights import file_sha256
from fcnlab.tasks.features import KEYWORD, cache_dir, recipe, recipe_key
from fcnlab.tasks.train import train

RUN = ["model=fcn32s_fixed", f"model.pretrained={KEYWORD}", "trainer.max_steps=2",
       "callbacks=[latest]"]


def _run(tmp_path, name, data_dir, extra=()):
    cfg = compose_cfg("train", RUN + list(extra), tmp_path / name, data_dir=data_dir)
    return cfg, train(cfg)


def test_built_once_then_reused_with_the_same_training(tmp_path):
    data_dir = tmp_path / "data"
    cfg, first = _run(tmp_path, "a", data_dir)
    info = first["pretrained"][KEYWORD]
    key = recipe_key(recipe(cfg))
    folder = cache_dir(cfg) / key
    assert info["built_now"] is True and info["key"] == key
    assert info["path"] == str(folder / "vgg16_classifier.pt")
    assert info["sha256"] == file_sha256(folder / "vgg16_classifier.pt")
    assert first["pretrained"]["sha256"] == info["sha256"]
    assert first["pretrained"]["copied"] == 30
    build = json.loads((folder / "results.json").read_text())
    assert build["status"] == "finished" and build["iterations"] == 4
    assert build["config"]["data"]["datamodule"]["seed"] == 1  # its own pictures
    assert not list(cache_dir(cfg).glob(".*"))  # no staging folder left

    _, again = _run(tmp_path, "b", data_dir)
    assert again["pretrained"][KEYWORD]["built_now"] is False
    assert again["pretrained"]["sha256"] == info["sha256"]
    # The same command trains the same network whether it built the cache or found it.
    a = torch.load(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    for name, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], value, rtol=0, atol=0)

    other, built = _run(tmp_path, "c", data_dir, ["embedded_imagenet.seed=1", "seed=3"])
    assert recipe_key(recipe(other)) != key and built["pretrained"][KEYWORD]["built_now"]
    # The build seeded with its own seed (1); the run's (3) is back, for its loader workers too.
    assert os.environ["PL_GLOBAL_SEED"] == "3"


def test_a_changed_file_stops_the_run_naming_it(tmp_path):
    data_dir = tmp_path / "data"
    cfg, first = _run(tmp_path, "a", data_dir)
    path = first["pretrained"][KEYWORD]["path"]
    state = torch.load(path, weights_only=True)
    state["features.0.bias"] += 1
    torch.save(state, path)
    with pytest.raises(DataError, match=r"vgg16_classifier\.pt: SHA-256 [0-9a-f]{64}, expected "
                                        r"[0-9a-f]{64} .*delete .* to rebuild"):
        _run(tmp_path, "b", data_dir)


def test_a_build_held_by_another_process_is_waited_for_a_bounded_time(tmp_path):
    import fcntl
    import time

    from fcnlab.tasks.features import _locked

    lock = tmp_path / "key.lock"
    with open(lock, "a") as other:  # another builder holds the lock
        fcntl.flock(other, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(DataError, match=r"key\.lock: another process has been building .*"
                                            r"embedded_imagenet\.wait_s=0\.5"):
            with _locked(lock, 0.5):
                pass
        assert time.monotonic() - started < 5
    with _locked(lock, 0.5):  # released: taken at once
        pass
