"""Publishing a report (``python -m fcnlab.report <sweep> --publish DIR``) and the README blocks
generated from it (``python -m fcnlab.report.readme``).

The sweep is written by hand: records shaped like a real ``debug=fast`` run's ``results.json``
(the minimal fields the report reads, plus checkpoint paths that must not be published), one
failed run, one job that crashed before writing a record, and one job nested a level deeper.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fcnlab.report.publish as publish_mod
from fcnlab.report.cli import main as report_main
from fcnlab.report.readme import main as readme_main
from fcnlab.report.readme import markers, render

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER_SHA = "fedcba9876543210fedcba9876543210fedcba98"
COMMAND = "train.py -m model=fcn32s,fcn8s,segnet debug=fast"


def _evaluation(iteration: int, g: float, c: float, miou: float, fw: float, bf: float) -> dict:
    return {"split": "val", "iteration": iteration, "pixel_acc": g, "mean_acc": c,
            "mean_iou": miou, "fw_iou": fw, "bf": bf,
            "iou": {"background": 0.9, "disk": miou, "box": None},
            "confmat": [[90, 5, 0], [3, 7, 0], [0, 0, 0]]}


def _record(folder: Path, model: str, evaluations: list[dict], *, status: str = "finished",
            budgets: list[int] | None = None, sha: str = SHA, dirty: bool = False,
            seed: int = 0) -> dict:
    record = {
        "task": "train", "model": model, "data": "synthetic", "output_dir": str(folder),
        "pretrained": {"path": "/weights/vgg16.pth", "sha256": "ab" * 32, "layout": "torchvision"},
        "status": status, "command": COMMAND, "commit": {"sha": sha, "dirty": dirty},
        "versions": {"python": "3.11.7"},
        "machine": {"platform": "Linux", "processor": "x86_64", "cpu_count": 2},
        "evaluations": evaluations, "wall_time_s": 12.5,
        "config": {"seed": seed, "budgets": budgets or [], "model": {"name": model},
                   "trainer": {"max_steps": 8, "val_check_interval": 2},
                   "paths": {"output_dir": str(folder)},
                   "callbacks": {"model_checkpoint": {"dirpath": str(folder / "checkpoints")}}},
    }
    if status == "finished":
        record["iterations"] = 8
        record["checkpoints"] = {"last": str(folder / "checkpoints" / "last.ckpt"),
                                 "best": str(folder / "checkpoints" / "best-iter000006.ckpt")}
    else:
        record["error"] = "RuntimeError: CUDA out of memory"
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / "results.json").write_text(json.dumps(record, indent=2))
    return record


@pytest.fixture
def fake_sweep(tmp_path) -> Path:
    sweep = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    sweep.mkdir(parents=True)
    _record(sweep / "0_model=fcn32s", "fcn32s", [_evaluation(8, 0.8, 0.2, 0.1, 0.7, 0.1)])
    _record(sweep / "1_model=fcn8s", "fcn8s", [
        _evaluation(2, 0.5, 0.2, 0.1, 0.4, 0.1),
        _evaluation(8, 0.876543, 0.234567, 0.123456, 0.765432, 0.2)])
    _record(sweep / "2_model=segnet", "segnet", [  # budgets [2, 4]; best after 4: iteration 6
        _evaluation(i, g, c, m, 0.7, b) for i, g, c, m, b in (
            (2, 0.71, 0.30, 0.51, 0.20), (4, 0.80, 0.40, 0.30, 0.25),
            (6, 0.823456, 0.434567, 0.41234, 0.3013), (8, 0.83, 0.44, 0.35, 0.31))],
        budgets=[2, 4])
    _record(sweep / "3_model=fcn16s", "fcn16s", [_evaluation(2, 0.6, 0.2, 0.1, 0.5, 0.1)],
            status="failed")
    crashed = sweep / "4_model=fcn32s_fixed"
    (crashed / ".hydra").mkdir(parents=True)
    (crashed / ".hydra" / "config.yaml").write_text("model:\n  name: fcn32s_fixed\n")
    _record(sweep / "seeds" / "5_model=fcn8s", "fcn8s", [_evaluation(8, 0.8, 0.2, 0.1, 0.7, 0.2)],
            seed=1)  # FCN-8s again, another seed: one row, mean ± std over the two
    return sweep


def _set_commit(sweep: Path, job: str, sha: str, dirty: bool) -> None:
    path = sweep / job / "results.json"
    record = json.loads(path.read_text())
    record["commit"] = {"sha": sha, "dirty": dirty}
    path.write_text(json.dumps(record))


def _publish(sweep: Path, dest: Path, *extra: str) -> int:
    return report_main([str(sweep), "--no-predictions", "--publish", str(dest), *extra])


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# ------------------------------------------------------------------------------------ publish
def test_publish_writes_the_report_records_and_manifest(fake_sweep, tmp_path):
    dest = tmp_path / "docs" / "results" / "demo"
    assert _publish(fake_sweep, dest) == 0
    files = set(_tree(dest))
    runs = {"0_model=fcn32s", "1_model=fcn8s", "2_model=segnet", "3_model=fcn16s",
            "4_model=fcn32s_fixed", "seeds__5_model=fcn8s"}
    assert {"table.md", "table.csv", "manifest.json"} | {f"runs/{r}.json" for r in runs} <= files
    assert any(f.startswith("plots/") and f.endswith(".png") for f in files)
    assert (dest / "table.csv").read_text() == (fake_sweep / "report" / "table.csv").read_text()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["demo"]  # no temp folder left

    for name in runs:  # the config is kept whole, as run; what points at saved files is not
        record = json.loads((dest / "runs" / f"{name}.json").read_text())
        assert not {"checkpoints", "output_dir", "resumed_from", "init_from"} & set(record)
        outside = json.dumps({k: v for k, v in record.items() if k != "config"})
        assert ".ckpt" not in outside and str(fake_sweep) not in outside, name
    source = json.loads((fake_sweep / "1_model=fcn8s" / "results.json").read_text())
    fcn8s = json.loads((dest / "runs" / "1_model=fcn8s.json").read_text())
    for key in ("model", "status", "iterations", "evaluations", "config", "command", "commit",
                "machine", "wall_time_s"):
        assert fcn8s[key] == source[key], key
    assert fcn8s["seed"] == 0 and fcn8s["pretrained_sha256"] == "ab" * 32
    assert fcn8s["evaluations"][-1]["mean_iou"] == 0.123456
    crashed = json.loads((dest / "runs" / "4_model=fcn32s_fixed.json").read_text())
    assert crashed["status"] == "failed" and "results.json" in crashed["error"]

    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["sweep"] == str(fake_sweep)
    assert manifest["report_command"] == (f"python -m fcnlab.report {fake_sweep} "
                                          f"--no-predictions --publish {dest}")
    assert manifest["date"][:2] == "20" and "T" in manifest["date"]
    assert manifest["commits"] == [{"sha": SHA, "dirty": False}]
    assert manifest["dirty"] is False and manifest["allow_dirty"] is False
    assert set(manifest["files"]) | {"manifest.json"} == files


def test_publish_copies_the_prediction_grid(fake_sweep, tmp_path):
    from fcnlab.report import build_report
    result = build_report(fake_sweep, predictions=False)
    grid = result["out"] / "predictions.png"
    grid.write_bytes(b"\x89PNG fake")
    result["predictions"] = grid
    publish_mod.publish(result, tmp_path / "pub", sweep=fake_sweep, command="python -m x")
    assert (tmp_path / "pub" / "predictions.png").read_bytes() == b"\x89PNG fake"


@pytest.mark.parametrize("change, words", [
    (("2_model=segnet", SHA, True), ["2_model=segnet", SHA[:12] + "+dirty"]),
    (("1_model=fcn8s", OTHER_SHA, False), ["1_model=fcn8s", OTHER_SHA[:12], "differ"]),
], ids=["dirty", "mixed-commits"])
def test_publish_refuses_a_dirty_or_mixed_sweep(fake_sweep, tmp_path, capsys, change, words):
    dest = tmp_path / "results" / "demo"
    assert _publish(fake_sweep, dest) == 0  # published before: must survive the refusal
    before = _tree(dest)
    _set_commit(fake_sweep, *change)
    capsys.readouterr()
    assert _publish(fake_sweep, dest) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert _tree(dest) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["demo"]
    assert _publish(fake_sweep, tmp_path / "fresh") == 2 and not (tmp_path / "fresh").exists()


def test_allow_dirty_publishes_it_marked(fake_sweep, tmp_path):
    _set_commit(fake_sweep, "2_model=segnet", SHA, True)
    dest = tmp_path / "results" / "demo"
    assert _publish(fake_sweep, dest, "--allow-dirty") == 0
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["allow_dirty"] and manifest["dirty"]
    assert "2_model=segnet" in manifest["problems"][0]
    assert {"sha": SHA, "dirty": True} in manifest["commits"]
    assert "**From a dirty tree**" in render(dest)
    with pytest.raises(SystemExit) as e:  # --allow-dirty means nothing without --publish
        report_main([str(fake_sweep), "--allow-dirty"])
    assert e.value.code == 2


def test_a_failed_publish_keeps_what_was_published(fake_sweep, tmp_path, monkeypatch):
    dest = tmp_path / "results" / "demo"
    assert _publish(fake_sweep, dest) == 0
    before = _tree(dest)

    def broken(run):
        raise OSError("disk full")

    monkeypatch.setattr(publish_mod, "trim_record", broken)
    with pytest.raises(OSError, match="disk full"):
        _publish(fake_sweep, dest)
    assert _tree(dest) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["demo"]


# ------------------------------------------------------------------------------ README blocks
PAGE = ("# Title\n\nProse above.\n\n<!-- results:demo -->\nhand-copied, stale\n"
        "<!-- /results:demo -->\n\nProse below.\n")


def test_readme_block_is_generated_from_the_published_files(fake_sweep, tmp_path, capsys):
    results = tmp_path / "docs" / "results"
    assert _publish(fake_sweep, results / "demo") == 0
    readme = tmp_path / "README.md"
    readme.write_text(PAGE)
    args = ["--readme", str(readme), "--results", str(results)]
    assert readme_main(args + ["--check"]) == 1  # the stale block differs
    assert readme.read_text() == PAGE  # --check writes nothing
    assert readme_main(args) == 0
    text = readme.read_text()
    assert markers(text) == ["demo"] and "stale" not in text
    assert text.startswith("# Title\n\nProse above.\n\n<!-- results:demo -->\nProduced by ")
    assert text.endswith(" |\n\n<!-- /results:demo -->\n\nProse below.\n")
    assert (f"Produced by `python {COMMAND}` then `python -m fcnlab.report {fake_sweep} "
            f"--no-predictions --publish {results / 'demo'}` at commit {SHA[:7]}, 5 job(s) taking "
            "1 min 2 s in all, on x86_64, 2 CPUs.") in text
    assert "| Network | n | iteration | pixel acc | mean acc | mean IU | f.w. IU |" in text
    assert ("| FCN-8s | 2 | 8 | 83.8 ± 5.4 (90.3) | 21.7 ± 2.4 (75.9) | 11.2 ± 1.7 (62.7) | "
            "73.3 ± 4.6 (83.2) |") in text
    assert "| FCN-32s | 1 | 8 | 80.0 (89.1) | 20.0 (73.3) | 10.0 (59.4) | 70.0 (81.4) |" in text
    assert "| FCN-16s (failed) | 1 | 2 | 60.0 (90.0) |" in text
    assert "| FCN-32s-fixed (failed) | 0 | – | – (83.0) |" in text
    assert "| Network | ours, >4 it | iteration | paper, >80K it |" in text
    assert "| SegNet | 82.35 / 43.46 / 41.23 / 30.13 | 6 | 90.40 / 71.20 / 60.10 / 46.84 |" in text
    assert "DeconvNet |" not in text  # a paper row without a run in the sweep says nothing
    # the findings follow the tables, each with the paper's difference and its verdict
    assert ("| finding (a > b in the paper) | paper, a − b | ours, a − b ± se | p | verdict |"
            in text)
    assert ("| FCN-8s > FCN-16s in mean IU: the 8s skip helps further | +0.3 | – | – | "
            "not judged" in text)
    assert text.index("| Network | ours, >4 it |") < text.index("Findings, judged on our runs")
    print(text)  # the generated block, for the record (pytest -s)

    capsys.readouterr()
    assert readme_main(args + ["--check"]) == 0
    readme.write_text(text.replace("83.8 ± 5.4 (90.3)", "84.8 ± 5.4 (90.3)"))  # edited by hand
    assert readme_main(args + ["--check"]) == 1
    diff = capsys.readouterr().out
    assert "-| FCN-8s | 2 | 8 | 84.8 ± 5.4 (90.3)" in diff
    assert "+| FCN-8s | 2 | 8 | 83.8 ± 5.4 (90.3)" in diff


@pytest.mark.parametrize("page, why", [
    ("<!-- results:missing -->\n<!-- /results:missing -->\n", "manifest.json"),
    ("<!-- results:demo -->\nno closing marker\n", "<!-- /results:demo -->"),
], ids=["no-folder", "unclosed"])
def test_readme_generator_rejects_a_broken_page(tmp_path, capsys, page, why):
    readme = tmp_path / "README.md"
    readme.write_text(page)
    for check in ([], ["--check"]):
        assert readme_main(["--readme", str(readme), "--results", str(tmp_path)] + check) == 2
        assert why in capsys.readouterr().err
    assert readme.read_text() == page


def test_render_a_hand_written_folder(tmp_path):
    """The block from files written by hand: a CSV of one row per run (no groups), a machine
    with a GPU, wall times summed over the jobs, one command for the whole sweep."""
    folder = tmp_path / "demo"
    (folder / "runs").mkdir(parents=True)
    manifest = {"report_command": "python -m fcnlab.report logs/x --publish docs/results/demo",
                "commits": [{"sha": SHA, "dirty": False}], "dirty": False}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for name in ("a", "b"):
        (folder / "runs" / f"{name}.json").write_text(json.dumps({
            "run": name, "command": "train.py -m experiment=fcn_table_embedded",
            "commit": manifest["commits"][0], "wall_time_s": 550.0,
            "machine": {"processor": "x86_64", "cpu_count": 16, "gpu": "NVIDIA H200"}}))
    (folder / "table.csv").write_text(
        "table,network,run,status,column,iteration,split,pixel_acc,mean_acc,mean_iou,fw_iou,"
        "paper_pixel_acc,paper_mean_acc,paper_mean_iou,paper_fw_iou\n"
        "fcn,FCN-32s,a,finished,final,800,val,83.33,15.8,10.94,71.1,89.1,73.3,59.4,81.4\n"
        "fcn,FCN-8s,,not run,final,,val,,,,,90.3,75.9,62.7,83.2\n"
        "fcn,FCN-8s,b,failed,final,400,val,80.0,20.0,nan,70.0,90.3,75.9,62.7,83.2\n")
    assert render(folder) == (
        "Produced by `python train.py -m experiment=fcn_table_embedded` then `python -m "
        "fcnlab.report logs/x --publish docs/results/demo` at commit 0123456, 2 job(s) taking "
        "18 min 20 s in all, on NVIDIA H200 (x86_64, 16 CPUs).\n\n"
        "Each cell: ours (paper), percent; ours is the final `val` evaluation.\n\n"
        "| Network | iteration | pixel acc | mean acc | mean IU | f.w. IU |\n"
        "|---|---|---|---|---|---|\n"
        "| FCN-32s | 800 | 83.3 (89.1) | 15.8 (73.3) | 10.9 (59.4) | 71.1 (81.4) |\n"
        "| FCN-8s (failed) | 400 | 80.0 (90.3) | 20.0 (75.9) | nan (62.7) | 70.0 (83.2) |")


def test_render_leaves_out_findings_nobody_ran(tmp_path):
    """A sweep of one network's seeds (the main job) judges no finding: the block is its table,
    without a findings table of "not run" rows; a judged finding beside them is kept."""
    folder = tmp_path / "main_job"
    (folder / "runs").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({
        "report_command": "python -m fcnlab.report logs/main_job --publish docs/results/main_job",
        "commits": [{"sha": SHA, "dirty": False}], "dirty": False}))
    (folder / "table.csv").write_text(
        "table,network,run,status,column,iteration,split,pixel_acc,mean_acc,mean_iou,fw_iou,"
        "paper_pixel_acc,paper_mean_acc,paper_mean_iou,paper_fw_iou\n"
        "fcn,FCN-8s,seed0,finished,final,1200,val,92.2,53.4,47.3,86.1,90.3,75.9,62.7,83.2\n")
    (folder / "runs" / "seed0.json").write_text(json.dumps({
        "run": "seed0", "command": "train.py -m seed=0,1,2 hydra.sweep.subdir=seed${seed}",
        "commit": {"sha": SHA, "dirty": False}, "wall_time_s": 190.0,
        "machine": {"processor": "x86_64", "cpu_count": 2}}))
    header = "table,finding,variant,paper_difference,difference,se,p,verdict\n"
    not_run = "fcn,FCN-16s > FCN-32s in mean IU,,3.0,,,,not run\n"
    (folder / "findings.csv").write_text(header + not_run)
    text = render(folder)
    assert "Findings" not in text
    # the command as a shell line to paste: ${seed} quoted, as its user typed it
    assert "`python train.py -m seed=0,1,2 'hydra.sweep.subdir=seed${seed}'`" in text
    judged = "fcn,FCN-8s > FCN-16s in mean IU,,0.3,12.5,1.3,0.0004,reproduced\n"
    (folder / "findings.csv").write_text(header + not_run + judged)
    text = render(folder)
    assert "FCN-8s > FCN-16s in mean IU" in text and "FCN-16s > FCN-32s" not in text
