"""scripts/recipe_speed.py (docs/embedded.md's iteration rates) runs and prints its table; no
timing is asserted."""

import subprocess
import sys
from pathlib import Path

from fcnlab.bench.rows import EMBEDDED_RECIPE

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import recipe_speed  # noqa: E402


def test_prints_one_row_per_variant():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "recipe_speed.py"), "--threads",
                           "1", "--steps", "1", "--batch", "2", "--hw", "32", "48"],
                          capture_output=True, text=True, timeout=300, check=True)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == list(recipe_speed.VARIANTS)
    assert all(float(r.rstrip(" |").split(" | ")[-1]) > 0 for r in rows)


def test_its_recipe_is_the_benchmarks():
    recipe = {k: recipe_speed.RECIPE[k] for k in EMBEDDED_RECIPE}
    assert recipe == EMBEDDED_RECIPE
