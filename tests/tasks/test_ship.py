"""The embedded ImageNet shipped with fcnlab (fcnlab.tasks.ship, fcnlab.tasks.features).

Checked: the repository ships the classifier of the main job's recipe, with the hash and the
accuracy its build recorded (the embedded study's goal: 80%); ``ship`` copies a build with its
folder written as a placeholder; a run whose cache lacks the recipe copies the shipped file
instead of building (same bytes, its records pointed at the cache); a damaged shipped file stops
the run naming it; ``shipped=false`` builds. The slow test rebuilds the shipped recipe from
scratch, as ``python -m fcnlab.tasks.ship`` would, and compares.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import compose_cfg
from fcnlab.errors import DataError
from fcnlab.models.weights import file_sha256
from fcnlab.tasks import features
from fcnlab.tasks.features import KEYWORD, PLACEHOLDER, SHIPPED_DIR, ensure, recipe, recipe_key
from fcnlab.tasks.ship import ship


def _main_job_key(tmp_path) -> str:
    cfg = compose_cfg("train", [], tmp_path, debug=None)
    assert cfg.model.pretrained == KEYWORD  # the main job starts from it
    return recipe_key(recipe(cfg))


def test_the_main_jobs_recipe_is_shipped_with_its_recorded_hash_and_accuracy(tmp_path):
    folder = SHIPPED_DIR / _main_job_key(tmp_path)
    assert (folder / "results.json").is_file(), (
        f"{folder}: no shipped classifier for the main job's recipe; "
        f"run python -m fcnlab.tasks.ship")
    record = json.loads((folder / "results.json").read_text())
    assert record["classifier"]["path"] == f"{PLACEHOLDER}/vgg16_classifier.pt"
    assert file_sha256(folder / "vgg16_classifier.pt") == record["classifier"]["sha256"]
    assert json.loads((folder / "recipe.json").read_text()) == recipe(
        compose_cfg("train", [], tmp_path / "b", debug=None))
    assert record["commit"]["dirty"] is False
    final = [e for e in record["evaluations"] if e["split"] == "val"][-1]
    assert final["iteration"] == record["iterations"]
    assert final["accuracy"] >= 0.80, final["accuracy"]
    assert [p.name for p in SHIPPED_DIR.iterdir() if not p.name.startswith(".")] == [folder.name]


@pytest.fixture
def shipped_tiny(tmp_path, monkeypatch):
    """A debug-size recipe built into one data folder and shipped into a temporary asset dir."""
    cfg = compose_cfg("train", [], tmp_path / "build", data_dir=tmp_path / "data_a")
    dest, info = ship(cfg, dest_root=tmp_path / "assets")
    monkeypatch.setattr(features, "SHIPPED_DIR", tmp_path / "assets")
    return cfg, dest, info


def test_ship_writes_the_folder_as_a_placeholder(shipped_tiny, tmp_path):
    cfg, dest, info = shipped_tiny
    assert dest == tmp_path / "assets" / info["key"] and info["source"] == "built"
    for name in ("results.json", "vgg16_classifier.pt.json"):
        text = (dest / name).read_text()
        assert str(tmp_path / "data_a" / KEYWORD) not in text and PLACEHOLDER in text
    assert file_sha256(dest / "vgg16_classifier.pt") == info["sha256"]


def test_a_run_without_the_cache_copies_the_shipped_file(shipped_tiny, tmp_path):
    _, dest, info = shipped_tiny
    cfg = compose_cfg("train", [], tmp_path / "run", data_dir=tmp_path / "data_b")
    got = ensure(cfg)
    assert got["source"] == "shipped" and got["built_now"] is False
    assert got["sha256"] == info["sha256"] and got["key"] == info["key"]
    folder = tmp_path / "data_b" / KEYWORD / info["key"]
    assert got["path"] == str(folder / "vgg16_classifier.pt")
    assert PLACEHOLDER not in (folder / "results.json").read_text()
    assert ensure(cfg)["source"] == "cache"  # the copy is the cache from then on

    # shipped=false builds instead (the reproduction check's switch; not part of the key)
    fresh = compose_cfg("train", [f"{KEYWORD}.shipped=false"], tmp_path / "run2",
                        data_dir=tmp_path / "data_c")
    assert recipe_key(recipe(fresh)) == info["key"]
    assert ensure(fresh)["source"] == "built"


def test_a_damaged_shipped_file_stops_the_run_naming_it(shipped_tiny, tmp_path):
    _, dest, _ = shipped_tiny
    state = torch.load(dest / "vgg16_classifier.pt", weights_only=True)
    state["features.0.bias"] += 1
    torch.save(state, dest / "vgg16_classifier.pt")
    cfg = compose_cfg("train", [], tmp_path / "run", data_dir=tmp_path / "data_b")
    with pytest.raises(DataError, match=r"assets/.*vgg16_classifier\.pt: SHA-256 [0-9a-f]{64}, "
                                        r"expected [0-9a-f]{64}.*shipped with fcnlab is damaged"):
        ensure(cfg)
    assert not list((tmp_path / "data_b" / KEYWORD).glob(".*"))  # no staging folder left


@pytest.mark.slow
def test_the_command_reproduces_the_shipped_classifier(tmp_path):
    """Rebuild the main job's recipe from scratch (about 12 min on 2 cores) and compare it with
    the shipped file: the same val crop accuracy within 1.5 points (the val crops' own sampling
    error is about 1.2 points), and on the torch version and thread count it was built with,
    the same weights to float rounding."""
    key = _main_job_key(tmp_path)
    shipped = json.loads((SHIPPED_DIR / key / "results.json").read_text())
    cfg = compose_cfg("train", [f"{KEYWORD}.shipped=false"], tmp_path / "run", debug=None,
                      data_dir=tmp_path / "data")
    got = ensure(cfg)
    assert got["source"] == "built" and got["key"] == key
    final = [e for e in shipped["evaluations"] if e["split"] == "val"][-1]
    assert abs(got["accuracy"] - final["accuracy"]) <= 0.015, (got["accuracy"], final["accuracy"])
    same_machine = (shipped["versions"]["torch"] == torch.__version__
                    and shipped["machine"]["torch_threads"] == torch.get_num_threads())
    if same_machine:
        a = torch.load(SHIPPED_DIR / key / "vgg16_classifier.pt", weights_only=True)
        b = torch.load(got["path"], weights_only=True)
        for name, value in a.items():
            torch.testing.assert_close(b[name], value, rtol=1e-4, atol=1e-4)
