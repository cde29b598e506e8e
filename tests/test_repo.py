"""What a newcomer's first minutes depend on: the README commands, CI, the quickstart."""

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert text.index("```bash") < 30, "the commands must be the README's first lines"
    main_job, tests = readme_commands()
    assert "pip install torch==2.13.0" in main_job and "examples/quickstart.py" in main_job
    assert "pip install torch==2.13.0" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines


def test_quickstart_runs_and_laplace_keeps_accuracy(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "reliability.png"
    module = runpy.run_path(str(ROOT / "examples" / "quickstart.py"))
    rows = module["main"](quick=True, out=str(out))
    assert out.stat().st_size > 10_000
    map_row, tuned_row = list(rows.values())[:2]
    # the Laplace predictive keeps the net's accuracy (issue: within 0.5 percentage points)
    assert abs(map_row["accuracy"] - tuned_row["accuracy"]) <= 0.005
    # and, tuned on held-out log loss, is no worse than the net in log loss
    assert tuned_row["log loss"] <= map_row["log loss"] + 1e-3


def test_no_test_module_redefines_a_shared_fixture():
    """Shared fixtures live in conftest.py only: a module that defines its own fixture of the
    same name silently gives its tests other data than the name promises elsewhere."""
    pattern = re.compile(r"@pytest\.fixture[^\n]*\ndef (\w+)\(")
    shared = set(pattern.findall((ROOT / "tests" / "conftest.py").read_text()))
    assert shared
    for path in (ROOT / "tests").glob("test_*.py"):
        clashes = shared & set(pattern.findall(path.read_text()))
        assert not clashes, f"{path.name} redefines {sorted(clashes)}"
