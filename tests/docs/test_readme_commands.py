"""Every command of README.md and docs/*.md is accepted as written: cheap checks, nothing trained.

The commands are parsed out of the pages themselves (``tests/readme_commands.py``: fenced blocks
and inline code spans whose first word is ``python``, ``make``, ``pip`` ...), so a command added
to any page gets checked, or fails ``test_every_command_is_checked_or_listed_as_skipped`` until
someone decides how to check it. Test ids name the page and line: ``docs/usage.md:42``.

- ``python train.py|eval.py|predict.py <overrides>``: the group options exist (what ``train.py``
  checks before Hydra starts); the config composes with Hydra's compose API (an unknown key is an
  error); it resolves with no ``???`` left; and for ``train.py`` the checks ``train(cfg)`` makes
  before it touches data: ``check_train_config``, ``check_budgets``, the network built on the meta
  device and its minimum input size. ``-m`` sweeps are expanded into their jobs the way Hydra's
  basic sweeper does (command line and ``hydra.sweeper.params``), and every job is checked; a
  staged job's ``model.init_from`` must point at an earlier job of the same sweep.
- ``python -m fcnlab.<tool> ...``: the tool's own argument parser accepts the arguments; the
  work itself is stubbed out (``fcnlab.models`` runs for real: it builds on the meta device, and
  its output must equal the parameter table of the page that has it).
- ``make <target>``: ``make -n`` (dry run) knows the target and its recipe runs what the page
  says; ``pip install "fcnlab[x]"``: the extra exists.
- A line of a worked example (a ``<!-- test: run -->`` block of ``docs/adding-*.md``) is run by
  ``tests/docs/test_docs_examples.py``; here its page must be one that test runs.

``<placeholders>`` (``<run>``, ``<32s run>``, ``<sweep>``) and example locations (``/data/...``,
``/weights/...``) become paths under ``tmp_path``; file-like ones are created empty so that the
"file exists" checks pass. Commands not checked are listed in ``SKIPPED``, with the reason.

Also checked, wherever the text lives now: the "Configuration" table names exactly the options
under ``conf/``; every fully written ``key=value`` and dotted config key the prose mentions
exists; every line of a shell block is a command these checks know; and each check rejects a
broken command of its kind (``BROKEN``). About 60 s on a busy 2-core CPU. The pages' structure
(front-page length, links) is checked in ``tests/docs/test_pages.py``.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

import fcnlab.config  # noqa: F401  (registers the resolvers the config uses)
from fcnlab.callbacks.budgets import check_budgets
from fcnlab.config import check_group_choices, check_train_config, instantiate, to_plain
from optional_extras import skip_unless_overrides_installed
from readme_commands import (COMMAND_WORDS, DOC_EXAMPLES, PAGES, PLACEHOLDER, ROOT, Command,
                             entry_point, extract, extract_all, fenced_shell_lines, page_name)

README = ROOT / "README.md"
CONF = ROOT / "conf"
COMMANDS = extract_all(PAGES)
# The pages whose prose is checked for config keys and overrides: all but docs/reference.md,
# which quotes the papers' and the reference code's own names (`ignore_label=255`), not ours.
PROSE_PAGES = [p for p in PAGES if p.name != "reference.md"]

# Commands of the pages that are not run here, and why. The set of skipped commands must equal
# this list exactly (test_every_command_is_checked_or_listed_as_skipped): a new command forces a
# decision, and a removed one forces this list to shrink.
SKIPPED = {
    ".venv/bin/python -m pytest -q":
        "the test suite itself: `make test` runs it, and CI (.ci/run) runs `make test`",
    "pip download --no-deps torchfcn==1.9.7 -d /tmp/torchfcn_dl && tar xzf "
    "/tmp/torchfcn_dl/torchfcn-1.9.7.tar.gz -C /tmp/torchfcn_dl":
        "fetches the peer network for the benchmark's peer comparison from PyPI (network); "
        "tests/bench/test_bench_peer.py tests --peer with a peer defined in the test",
    "wandb sync <run>/wandb/offline-run-*":
        "wandb's own CLI on an offline run (would upload); tests/callbacks/test_wandb.py checks "
        "that <run>/wandb/offline-run-* is written",
    "python train.py model=tiny_decoder model.net.width=0.25":
        "docs/adding-a-model.md: the example's own model, whose conf/model/tiny_decoder.yaml only "
        "the page's worked example writes; tests/docs/test_docs_examples.py trains it",
    "python eval.py ckpt_path=…":
        "docs/adding-a-*.md: `…` is the checkpoint of the example's run; eval.py with a "
        "written-out checkpoint path is checked from docs/usage.md",
    "python predict.py ckpt_path=… input=…":
        "docs/adding-a-model.md: `…` is the example's run and images; predict.py with "
        "written-out paths is checked from docs/usage.md",
    "python scripts/object_sizes.py":
        "docs/tables.md: reads the main job's synthetic data folder under data/, which a test "
        "session does not write there; it prints one line of counts",
    "python scripts/object_sizes.py --data data/synthetic-v1-192x256-n2000-200-200-s0-void1":
        "docs/embedded.md: reads a 192x256 synthetic data folder under data/ that only the "
        "page's probe writes; the script itself is the README's, skipped above",
    "python scripts/redraw_layers.py data/embedded_imagenet/a38b2ba2bf3e6e18/vgg16_classifier.pt "
    "logs/probes/conv5/vgg16_classifier.pt features.24 features.26 features.28":
        "docs/embedded.md: reads the embedded ImageNet a first run copies under data/; "
        "tests/test_scripts.py runs the script on a small file",
    "python predict.py ckpt_path=… input=<folder>":
        "docs/adding-a-dataset.md: `…` is the checkpoint of the example's run; predict.py with "
        "written-out paths is checked from docs/usage.md",
}


# --------------------------------------------------------------------------- helpers
# Example locations of the user's files in the pages' commands (`paths.data_dir=/data`,
# `model.pretrained=/weights/vgg16.pth`): they are placeholders too.
# `logs/...`: what an earlier command of the pages wrote (e.g. the FCN table's classifier),
# which a fresh clone does not have.
EXAMPLE_ROOTS = ("/data", "/weights", "/path/to", "logs")


def _placeholders_to_paths(words: list[str], tmp: Path) -> list[str]:
    """``key=logs/<run>/last.ckpt`` -> ``key=<tmp>/logs/PH-run/last.ckpt`` and ``key=/data/x.txt``
    -> ``key=<tmp>/data/x.txt`` (created: empty if a file, else a folder)."""
    out = []
    for word in words:
        key, sep, value = word.partition("=") if "=" in word else ("", "", word)
        example = value.startswith(tuple(r + "/" for r in EXAMPLE_ROOTS)) or value in EXAMPLE_ROOTS
        if not (PLACEHOLDER.search(value) or example):
            out.append(word)
            continue
        value = PLACEHOLDER.sub(lambda m: "PH-" + re.sub(r"\W+", "_", m.group(1)), value)
        path = tmp / value.lstrip("/")
        if path.suffix in (".ckpt", ".pt", ".pth", ".txt"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
        if key == "paths.data_dir":  # the local files the scale=paper presets read from there
            for name in PAPER_PRESET_FILES:
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                (path / name).touch()
        out.append(f"{key}{sep}{path}")
    return out


# conf/experiment/*_paper.yaml: ${paths.data_dir}/<these> (docs/data.md names them)
PAPER_PRESET_FILES = ("weights/vgg16_classifier.pth", "seg11valid.txt")


def _script_args(cmd: Command, tmp: Path) -> list[str]:
    """The words after ``python <script>`` / ``python -m <module>``, placeholders as paths."""
    argv = cmd.argv
    start = 3 if argv[1] == "-m" else 2
    return _placeholders_to_paths(argv[start:], tmp)


def _hydra_cli(args: list[str]) -> tuple[bool, list[str]]:
    """Split Hydra's own flags (``-m``, ``--cfg job``) from the overrides; refuse any other."""
    multirun, show_cfg, overrides, rest = False, False, [], iter(args)
    for a in rest:
        if a in ("-m", "--multirun"):
            multirun = True
        elif a in ("--cfg", "-c"):
            assert next(rest, None) in ("job", "hydra", "all"), "--cfg takes job, hydra or all"
            show_cfg = True
        elif a == "--resolve":
            pass
        else:
            assert not a.startswith("-"), f"{a}: not a Hydra flag handled here"
            overrides.append(a)
    assert not (multirun and show_cfg), "Hydra refuses -m together with --cfg"
    return multirun, overrides


def _compose(config_name: str, overrides: list[str], tmp: Path) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` as ``@hydra.main`` would, with HydraConfig set so that
    ``${hydra:...}`` resolves. Logs go under ``tmp`` (the command's own overrides win)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name=config_name, return_hydra_config=True,
                          overrides=[f"paths.log_dir={tmp / 'logs'}", *overrides])
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp / "run")
        cfg.hydra.job.id = "readme"
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def _resolved_app(cfg: DictConfig) -> dict:
    """The app config (no ``hydra`` node), resolved; raises on ``???`` or a bad interpolation."""
    app = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    assert not OmegaConf.missing_keys(app), f"??? left: {sorted(OmegaConf.missing_keys(app))}"
    return OmegaConf.to_container(app, resolve=True, throw_on_missing=True)


def _sweep_jobs(config_name: str, overrides: list[str], tmp: Path) -> list[list[str]]:
    """The jobs of ``-m <overrides>``, in Hydra's basic-sweeper order (config's
    ``hydra.sweeper.params`` first, the command line's overrides win)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    first = [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
             if o.is_sweep_override() else o.input_line for o in parsed]
    cfg = _compose(config_name, first, tmp)
    sweeper = cfg.hydra.sweeper
    if not sweeper._target_.endswith("BasicSweeper"):  # Optuna: it picks the values itself
        for key in sweeper.get("params") or {}:
            assert OmegaConf.select(cfg, key) is not None, f"sweeper.params: no key {key}"
        return [first]
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + overrides)
    return BasicSweeper.split_arguments(parsed, None)[0]


def _check_train_job(cfg: DictConfig) -> None:
    """What ``train(cfg)`` checks before it reads any data, for one job."""
    app = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    if "pretrain" in (app.get("task"), OmegaConf.select(app, "model.task")):
        from fcnlab.tasks.pretrain import pretrain_params

        pretrain_params(app)
        return
    check_train_config(app)
    check_budgets(app.get("budgets"), app.trainer.max_steps, app.trainer.get("val_check_interval"))
    net_cfg = to_plain(app.model.net)
    with torch.device("meta"):  # shapes only: a full-width VGG16 costs nothing here
        net = instantiate(net_cfg)
    size = OmegaConf.select(app, "data.datamodule.image_size")
    if size is not None and hasattr(net, "check_input_size"):
        net.check_input_size(list(size))


# --------------------------------------------------------------------------- per entry point
def check_train(cmd: Command, tmp: Path) -> None:
    args = _script_args(cmd, tmp)
    assert check_group_choices(CONF, args) is None
    multirun, overrides = _hydra_cli(args)
    jobs = _sweep_jobs("train", overrides, tmp) if multirun else [overrides]
    assert jobs, "a sweep with no jobs"
    done: list[str] = []  # sweep subdirs of the jobs already checked
    for job in jobs:
        cfg = _compose("train", job, tmp)
        _resolved_app(cfg)
        if multirun:  # a staged job starts from what an earlier job of this sweep wrote
            sweep_dir = Path(HydraConfig.get().sweep.dir)
            for key in ("model.init_from", "model.pretrained"):
                path = OmegaConf.select(cfg, key)
                if path and Path(path).is_relative_to(sweep_dir):
                    rel = Path(path).relative_to(sweep_dir).as_posix()  # <model>/seed<k>/…
                    assert any(rel.startswith(f"{d}/") for d in done), (
                        f"{job}: {key}={path} is not an earlier job's output")
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                    Path(path).touch()  # what that earlier job writes
        _check_train_job(cfg)
        if multirun:
            done.append(str(HydraConfig.get().sweep.subdir))
        GlobalHydra.instance().clear()


def check_eval(cmd: Command, tmp: Path) -> None:
    args = _script_args(cmd, tmp)
    assert check_group_choices(CONF, args) is None
    multirun, overrides = _hydra_cli(args)
    assert not multirun
    cfg = _compose("eval", overrides, tmp)
    app = _resolved_app(cfg)
    assert app["split"] in ("val", "test")
    assert Path(app["ckpt_path"]).is_file()


def check_predict(cmd: Command, tmp: Path) -> None:
    args = _script_args(cmd, tmp)
    assert check_group_choices(CONF, args) is None
    multirun, overrides = _hydra_cli(args)
    assert not multirun
    app = _resolved_app(_compose("predict", overrides, tmp))
    assert Path(app["ckpt_path"]).is_file() and app["input"] and app["output"]


def _compose_plain(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` for an entry that has no ``paths`` node (export)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def check_export(cmd: Command, tmp: Path) -> None:
    """``python export.py ckpt_path=… [format=…]``: composed, and its arguments checked for real."""
    from fcnlab.tasks.export import FORMATS, export_arguments

    args = _script_args(cmd, tmp)
    assert check_group_choices(CONF, args) is None
    multirun, overrides = _hydra_cli(args)
    assert not multirun
    kwargs = export_arguments(_compose_plain("export", overrides))
    assert kwargs["format"] in FORMATS and Path(kwargs["ckpt_path"]).is_file()


def page_with(marker: str) -> tuple[Path, str]:
    """The one page (README.md or docs/*.md) whose text holds ``marker``, and that text: a table
    is checked wherever it moved to, and must not be kept in two copies."""
    found = [(p, p.read_text()) for p in PAGES if marker in p.read_text()]
    assert len(found) == 1, f"{marker!r}: expected on one page, found on " \
        f"{[page_name(p) for p, _ in found] or 'none'}"
    return found[0]


def _parameter_table() -> dict[str, list[str]]:
    _, text = page_with("| model | learnable (K=21)")
    head = text.index("| model | learnable (K=21)")
    rows = {}
    for line in text[head:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def check_params(cmd: Command, tmp: Path, capsys, monkeypatch) -> None:
    """``python params.py [width=…] [classes=…]``: run for real (meta tensors, no memory), and
    the printed table must be the one on the page."""
    from fcnlab.tasks.params import parameter_table

    args = _script_args(cmd, tmp)
    assert check_group_choices(CONF, args) is None
    multirun, overrides = _hydra_cli(args)
    assert not multirun
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            parameter_table(compose(config_name="params", overrides=overrides))
    finally:
        GlobalHydra.instance().clear()
    printed = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            printed[cells[0]] = cells[1:]
    page, _ = page_with("| model | learnable (K=21)")
    assert printed == _parameter_table(), f"{page_name(page)}: the parameter table is stale"


def check_verify(cmd: Command, tmp: Path, monkeypatch) -> None:
    """``python verify.py data=… paths.data_dir=…``: composed for real and the task run; building
    the DataModule and reading the files (which are not here) are stubbed."""
    from types import SimpleNamespace

    import fcnlab.tasks.verify as verify

    seen = {}

    def fake_instantiate(node, **kw):
        seen["datamodule"] = node
        # make_dataset: verify.py may wrap it (progress); verify_datamodule is stubbed below
        return SimpleNamespace(class_names=["a", "b"], make_dataset=lambda key, **kw: None)

    args = _script_args(cmd, tmp)
    assert check_group_choices(CONF, args) is None
    multirun, overrides = _hydra_cli(args)
    assert not multirun
    cfg = _compose("verify", overrides, tmp)
    monkeypatch.setattr(verify, "instantiate", fake_instantiate)
    monkeypatch.setattr(verify, "verify_datamodule", lambda dm: [])
    monkeypatch.setattr(verify, "format_report", lambda reports, names: "")
    assert isinstance(verify.verify(cfg), dict)
    assert "_target_" in seen["datamodule"]


def check_report(cmd: Command, tmp: Path, monkeypatch) -> None:
    import fcnlab.report.cli as cli

    calls = []

    def fake_build(sweep, table, split, out, predictions, num_images):
        calls.append(sweep)
        return {"markdown": "", "out": tmp, "plots": [], "predictions": None}

    published = []

    def fake_publish(result, dest, **kwargs):  # would write into the repository's docs/results/
        published.append(dest)
        return {"files": [], "dirty": False}

    monkeypatch.setattr(cli, "build_report", fake_build)
    monkeypatch.setattr(cli, "publish", fake_publish)
    args = _script_args(cmd, tmp)
    assert cli.main(args) == 0 and len(calls) == 1
    assert len(published) == ("--publish" in args)


def check_readme(cmd: Command, tmp: Path) -> None:
    """``python -m fcnlab.report.readme [--check]``: its parser accepts the arguments; nothing is
    rewritten (tests/docs/test_results.py compares README.md's blocks with docs/results/)."""
    from fcnlab.report.readme import parse
    parse(_script_args(cmd, tmp))


def check_bench(cmd: Command, tmp: Path) -> None:
    """The command, and every ``--flag value|value`` its comment on the page offers, parse."""
    from fcnlab.bench.__main__ import parse

    args = _script_args(cmd, tmp)
    if args == ["--help"]:
        with pytest.raises(SystemExit) as e:
            parse(args)
        assert e.value.code == 0
        return
    parse(args)
    offered = re.findall(r"(--[\w-]+)\s+([^\s,;]+)", cmd.comment)
    for flag, values in offered:
        for value in values.split("|"):
            parse([flag, value])


def _makefile_default(var: str) -> str:
    m = re.search(rf"^{var}\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert m, f"no {var} ?= in the Makefile"
    return m.group(1)


MAKE_RECIPES = {"train": "train.py", "test": "-m pytest -q", "test-slow": "-m pytest -q -m slow"}


def check_make(cmd: Command, tmp: Path) -> None:
    args = cmd.argv[1:]
    # -n: print the recipes, run nothing; -B: as on a fresh clone (the install recipe too).
    done = subprocess.run(["make", "-n", "-B", "-C", str(ROOT), *args], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    target = next(a for a in args if "=" not in a)
    assert MAKE_RECIPES[target] in done.stdout, done.stdout
    for var in (a for a in args if "=" in a):  # e.g. TORCH=torch: a Makefile variable, used
        name, _, value = var.partition("=")
        assert re.search(rf"^{name}\s*\?=", (ROOT / "Makefile").read_text(), re.M), name
        assert value in done.stdout, done.stdout


def _extras() -> set[str]:
    """The extras of pyproject.toml (no tomllib: the package supports Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+)\s*=", section, re.M))


def check_pip(cmd: Command, tmp: Path) -> None:
    """``pip install "fcnlab[x]"``: the extra exists (nothing is installed)."""
    spec = cmd.argv[-1]
    m = re.fullmatch(r"(fcnlab|\.)\[([\w,]+)\]", spec)
    assert m, f"{spec}: expected fcnlab[extra] or .[extra]"
    assert set(m.group(2).split(",")) <= _extras()


def check_venv_line(cmd: Command, tmp: Path) -> None:
    """The make-less set-up line installs what `make` does: the same torch pin, the test extra."""
    first, second = (part.split() for part in cmd.line.split("&&"))
    assert first == ["python3", "-m", "venv", ".venv"]
    assert second[:2] == [".venv/bin/pip", "install"]
    assert _makefile_default("TORCH") in second
    extras = re.search(r"\.\[([\w,]+)\]", cmd.line).group(1)
    assert set(extras.split(",")) <= _extras()


def check_example(cmd: Command, tmp: Path) -> None:
    """A line of a ``<!-- test: run -->`` block: tests/docs/test_docs_examples.py runs its page's
    blocks in order (this line may need files an earlier block writes), so its page must be one
    that test runs."""
    assert cmd.page in DOC_EXAMPLES, (
        f"{cmd.where}: a worked-example block on a page test_docs_examples.py does not run "
        f"(add it to DOC_EXAMPLES in tests/readme_commands.py)")


def check_mention(cmd: Command, tmp: Path) -> None:
    """Inline ``python -m <module>`` in prose: the module is runnable."""
    module = cmd.argv[2]
    spec = importlib.util.find_spec(module)
    assert spec is not None, module
    if spec.submodule_search_locations:  # a package: needs __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None, module


def check_convert(cmd: Command, tmp: Path) -> None:
    """``python -m fcnlab.models.convert …``: run for real on a tiny torchvision-layout VGG16
    written at the command's input path (its /data/… paths moved under ``tmp``)."""
    import torch

    from fcnlab.models.convert import main, parse
    from fcnlab.models.sidecar import input_convention
    from fcnlab.models.vgg import VGG16Classifier
    from fcnlab.models.weights import read_vgg16_classifier

    args = [str(tmp / a.lstrip("/")) if a.startswith("/data/") else a
            for a in _script_args(cmd, tmp)]
    parsed = parse(args)
    Path(parsed.input).parent.mkdir(parents=True, exist_ok=True)
    torch.save(VGG16Classifier(0.0625).state_dict(), parsed.input)
    if parsed.to:  # the harness's placeholder for the paper presets' weights file, if any
        Path(parsed.output).unlink(missing_ok=True)
    assert main(args) == 0
    written = parsed.output if parsed.to else parsed.input
    layout = read_vgg16_classifier(written)[1]
    assert input_convention(written, layout)[0] == (parsed.to or parsed.declare)


def handler(cmd: Command):
    if cmd.line in SKIPPED:
        return None
    if cmd.example:
        return check_example
    if cmd.mention:
        return check_mention
    if "&&" in cmd.line and "venv" in cmd.line:
        return check_venv_line
    return {
        "train.py": check_train, "eval.py": check_eval, "predict.py": check_predict,
        "export.py": check_export, "params.py": check_params, "verify.py": check_verify,
        "-m fcnlab.report": check_report, "-m fcnlab.report.readme": check_readme,
        "-m fcnlab.models.convert": check_convert,
        "-m fcnlab.bench": check_bench, "make train": check_make, "make test": check_make,
        "make test-slow": check_make, "pip install": check_pip,
    }.get(entry_point(cmd), "unhandled")


CHECKED = [c for c in COMMANDS if handler(c) not in (None, "unhandled")]

# A command whose overrides select a Hydra plugin from an optional extra (launcher=joblib,
# launcher=slurm, hparams_search=optuna_lr: read from their conf files) is skipped, naming the
# extra, when that extra is absent (`make test EXTRAS=test`); `make` installs them all.
_skip_without_extras = skip_unless_overrides_installed


# --------------------------------------------------------------------------- tests
def test_the_pages_have_the_commands_they_should():
    """The parser finds the commands (a broken parser would check nothing): the front page's
    set-up and tables, a docs page's everyday commands, a worked example's lines."""
    readme = {c.line for c in extract(README)}
    assert {"make train", "make test",
            "python -m fcnlab.report logs/tables/fcn_table-embedded"} <= readme
    lines = {c.line for c in COMMANDS}
    assert "python train.py --cfg job" in lines
    assert {c.page for c in COMMANDS if c.example} == set(DOC_EXAMPLES)
    assert len(COMMANDS) >= 60


def test_every_command_is_checked_or_listed_as_skipped():
    unhandled = [f"{c.where}: {c.line}" for c in COMMANDS if handler(c) == "unhandled"]
    assert not unhandled, "commands nobody checks (add a check or a SKIPPED entry):\n" + \
        "\n".join(unhandled)
    skipped = {c.line for c in COMMANDS if handler(c) is None}
    assert skipped == set(SKIPPED), (
        f"skipped but on no page: {sorted(set(SKIPPED) - skipped)}; "
        f"on a page, skipped, not listed: {sorted(skipped - set(SKIPPED))}")


@pytest.mark.parametrize("doc", PAGES, ids=page_name)
def test_shell_blocks_hold_only_commands(doc):
    """Every line of a ```bash block is a command the extractor sees (no `cd`, `export X=`), so
    every shell line of every page is checked. A worked example's `<!-- test: run -->` block is
    run as written by tests/docs/test_docs_examples.py instead."""
    for lang, lineno, line in fenced_shell_lines(doc, with_examples=False):
        assert line.split()[0] in COMMAND_WORDS, (
            f"{page_name(doc)}:{lineno}: {line!r} is not a command this test knows")


@pytest.mark.parametrize("cmd", CHECKED, ids=[f"{c.where}:{c.line[:70]}" for c in CHECKED])
def test_command_is_accepted(cmd, tmp_path, capsys, monkeypatch):
    _skip_without_extras(cmd.argv)
    _run_check(handler(cmd), cmd, tmp_path, capsys, monkeypatch)


def _run_check(check, cmd: Command, tmp_path, capsys, monkeypatch) -> None:
    """Call a command's check with the fixtures it takes; Hydra is left clean either way."""
    try:
        if check is check_params:
            check(cmd, tmp_path, capsys, monkeypatch)
        elif check in (check_verify, check_report):
            check(cmd, tmp_path, monkeypatch)
        else:
            check(cmd, tmp_path)
    finally:
        GlobalHydra.instance().clear()


# --------------------------------------------------------------------------- tables and prose
def _config_table() -> dict[str, set[str]]:
    _, text = page_with("| group | options |")
    head = text.index("| group | options |")
    rows = {}
    for line in text[head:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        group, options = (c.strip() for c in line.strip("|").split("|", 1))
        rows[group.strip("`")] = {o for o in re.findall(r"`([^`]+)`", options)
                                  if re.fullmatch(r"\w+", o)}
    return rows


def test_configuration_table_lists_every_group_option():
    """The "Configuration" table (on whichever page holds it) names exactly the options under
    conf/<group>/."""
    table, wrong = _config_table(), []
    page = page_name(page_with("| group | options |")[0])
    assert len(table) >= 10, table
    for group, listed in table.items():
        on_disk = {p.stem for p in (CONF / group).glob("*.yaml")}
        if listed != on_disk:
            wrong.append(f"{group}: missing from {page} {sorted(on_disk - listed)}, "
                         f"not in conf/{group}/ {sorted(listed - on_disk)}")
    assert not wrong, "\n".join(wrong)


# Inline `key=value` overrides that are shorthand in prose (not valid on the command line as
# written): they are read with the group or key named next to them.
SHORTHAND = {
    "model=", "data=", "data=…", "weights_only=True",
    "model=fcn32s_fixed model.pretrained=<that file>",  # checked below with the file made
}


# Where an inline override may apply: train.py with the defaults, another data set (real-data
# keys) or another model (`model.net.unpool` ...), or eval.py (split=, crf.enabled= ...).
CONTEXTS = [("train", []),
            *(("train", [f"{group}={p.stem}"]) for group in ("data", "model")
              for p in sorted((CONF / group).glob("*.yaml"))),
            ("eval", ["ckpt_path=x"])]


def _prose(doc: Path) -> str:
    """A page's text without its fenced blocks (commands there are checked as commands)."""
    return re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)


def _inline_overrides() -> list[str]:
    """Every inline `key=value` span of the pages' prose; one in shell quotes
    (`'fast.compile={mode: max-autotune}'`) is read as the shell passes it, unquoted."""
    spans = (" ".join(s.split()) for doc in PROSE_PAGES
             for s in re.findall(r"`([^`]+)`", _prose(doc)))
    return list(dict.fromkeys(s for s in spans
                              if re.match(r"'?[+~]?[a-z_][\w.]*=(?!=)", s)))


INLINE_OVERRIDES = _inline_overrides()


def test_inline_overrides_shorthand_is_current():
    gone = sorted(set(SHORTHAND) - set(INLINE_OVERRIDES))
    assert not gone, f"no longer on any page (written out now?): drop from SHORTHAND: {gone}"


@pytest.mark.parametrize("span", [s for s in INLINE_OVERRIDES if s not in SHORTHAND])
def test_inline_override_composes(span, tmp_path):
    """Every fully written `key=value` the pages mention in prose composes with train.py (any
    data set) or eval.py: no stale key or option. Shorthand ones are listed in SHORTHAND. One
    per test, so that one needing an absent extra (`launcher=joblib`) is skipped alone."""
    words = _placeholders_to_paths(Command(span, "", False).argv, tmp_path)  # shell words
    _skip_without_extras(words)
    errors = []
    for config_name, extra in CONTEXTS:
        try:
            _compose(config_name, words + extra, tmp_path)
            return
        except Exception as e:  # noqa: BLE001  (report every context's failure at once)
            errors.append(f"{config_name} {extra}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0]}")
        finally:
            GlobalHydra.instance().clear()
    pytest.fail(f"{span}: {errors}")


def test_fcn32s_fixed_recipe_is_accepted(tmp_path):
    """The FCN-32s-fixed recipe, with the pretraining run's file."""
    recipe = "python train.py model=fcn32s_fixed model.pretrained=<run>/vgg16_classifier.pt"
    check_train(Command(recipe, "docs/data.md", False), tmp_path)


def _keys(node: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in node.items():
        out.add(prefix + str(k))
        if isinstance(v, dict):
            out |= _keys(v, f"{prefix}{k}.")
    return out


def test_inline_config_keys_exist(tmp_path):
    """Every dotted config key the pages name in prose (`model.net.unpool`, `metrics.boundary`
    ...) exists in the config of some model or data set: no stale switch."""
    text = "\n".join(_prose(doc) for doc in PROSE_PAGES)
    named = {s for s in re.findall(r"`([^`\s=]+)`", text)
             if re.fullmatch(r"(model|data|optim|trainer|loss|metrics|crf|callbacks|paths|"
                             r"logger|pretrain)(\.\w+)+", s)}
    assert len(named) >= 5, named
    known: set[str] = set()
    for group, default in (("model", "data"), ("data", "model")):
        for p in sorted((CONF / group).glob("*.yaml")):
            try:
                cfg = _compose("train", [f"{group}={p.stem}"], tmp_path)
                known |= _keys(OmegaConf.to_container(
                    OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])))
            finally:
                GlobalHydra.instance().clear()
    assert not named - known, f"the pages name keys no config has: {sorted(named - known)}"


# --------------------------------------------------------------------------- the checks check
BROKEN = [
    "python train.py model=fcn32 ",                                 # no such model
    "python train.py trainer.max_step=10",                          # no such key
    "python train.py trainer.max_steps=abc",                        # wrong value
    "python train.py budgets=[300] trainer.val_check_interval=200",  # budget off an evaluation
    "python train.py model=deconvnet model.net.fc6_padding=0",      # valid fc6: 96x128 < 193x193
    "python train.py model=fcn16s model.init_from=nowhere/last.ckpt",
    "python train.py -m experiment=fcn_table_embedded model=fcn16s,fcn32s",  # 16s before the 32s it needs
    "python eval.py split=test",                                    # ckpt_path ??? left
    "python predict.py ckpt_path=<run>/last.ckpt",                  # input ??? left
    "python export.py ckpt_path=<run>/last.ckpt format=tflite",
    "python -m fcnlab.report <sweep> --tables fcn",
    "python -m fcnlab.report <sweep> --allow-dirty",                # only with --publish
    "python -m fcnlab.report.readme --write",
    "python verify.py data=vocc",
    "python -m fcnlab.bench --preset huge   # --preset tiny",
    "make tests",
    'pip install "fcnlab[gpu]"',
]


@pytest.mark.parametrize("line", BROKEN)
def test_checks_reject_a_broken_command(line, tmp_path, capsys, monkeypatch):
    """Each check fails on a wrong command of its kind (else it would pass anything)."""
    from hydra.errors import ConfigCompositionException

    from fcnlab.errors import ConfigError

    text, _, comment = line.partition("#")
    cmd = Command(" ".join(text.split()), "BROKEN", True, comment.strip())
    check = handler(cmd)
    if check == "unhandled":  # test_every_command_is_checked_or_listed_as_skipped fails on it
        assert line.startswith("make tests")
        return
    with pytest.raises((AssertionError, SystemExit, ConfigError, ConfigCompositionException)):
        _run_check(check, cmd, tmp_path, capsys, monkeypatch)
