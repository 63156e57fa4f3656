"""``python params.py``: the parameter table of every model config, built from the real config."""


import pytest
from conftest import CONF_DIR, run_scripts
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from fcnlab.errors import ConfigError
from fcnlab.models import FCN
from fcnlab.tasks.params import parameter_table

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def _table(*overrides: str) -> dict:
    """Compose conf/params.yaml and run the task inside Hydra, as ``params.py`` does."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return parameter_table(compose(config_name="params", overrides=list(overrides)))
    finally:
        GlobalHydra.instance().clear()


def _count(net) -> tuple[int, int]:
    params = list(net.parameters())
    learnable = sum(p.numel() for p in params if p.requires_grad)
    return learnable, sum(p.numel() for p in params) - learnable


def test_every_model_config_counted_at_each_k(capsys):
    tables = _table("width=0.0625", "classes=[5,3]")
    out = capsys.readouterr().out.splitlines()
    assert list(tables) == [5, 3] and all(sorted(t) == MODELS for t in tables.values())
    assert out[0] == "Parameters at width 0.0625:"
    assert out[2] == "| model | learnable (K=5) | fixed (K=5) | learnable (K=3) | fixed (K=3) |"
    assert len(out) == 4 + len(MODELS)
    # FCN-8s counted independently, from the class the config names (fcn8s.yaml: variant 8s)
    learnable, fixed = _count(FCN(num_classes=5, variant="8s", width=0.0625))
    assert (tables[5]["fcn8s"]["learnable"], tables[5]["fcn8s"]["fixed"]) == (learnable, fixed)
    assert f"| fcn8s | {learnable:,} | {fixed:,} |" in "\n".join(out)
    # the frozen trunk of FCN-32s-fixed is counted as fixed (CVPR 2015 Table 2, first row)
    fixed32 = tables[5]["fcn32s_fixed"]
    assert fixed32["fixed"] > 10 * fixed32["learnable"] > 0


@pytest.mark.parametrize("overrides, key", [
    (["classes=[1]"], "classes"), (["classes=[21,x]"], "classes"), (["classes=[]"], "classes"),
    (["width=0"], "width"), (["width=abc"], "width"),
])
def test_bad_values_name_their_key(overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}: expected"):
        _table(*overrides)


def test_script_prints_the_table_and_errors_in_one_line(tmp_path):
    """The real entry, from another working directory (conf/ is found next to params.py)."""
    runs = {"table": ["width=0.0625", "classes=3"], "bad": ["classes=[1]"]}
    done = run_scripts("params.py", runs, tmp_path)
    code, out, err = done["table"]
    assert code == 0, err
    assert "| model | learnable (K=3) | fixed (K=3) |" in out
    assert all(f"| {name} | " in out for name in MODELS)
    code, out, err = done["bad"]
    assert code == 1 and err.startswith("error: classes: expected") and err.count("\n") == 1, err
    assert [p.name for p in tmp_path.iterdir()] == [], "params.py wrote files"
