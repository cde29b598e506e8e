"""What a newcomer's first minutes depend on: the README commands, CI, the quickstart."""

import inspect
import re
import runpy
import shutil
import subprocess
from pathlib import Path

import pytest

from sklaplace.metrics import expected_calibration_error

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


@pytest.mark.floors
def test_quickstart_runs_and_laplace_keeps_accuracy(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)  # the default output goes under the current directory
    module = runpy.run_path(str(ROOT / "examples" / "quickstart.py"))
    rows = module["main"](quick=True)
    out = tmp_path / "examples_output" / "quickstart.png"
    assert out.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["examples_output"]
    printed = capsys.readouterr().out
    assert str(out) in printed, "the quickstart says where the picture is"
    # one ECE binning, stated: the metric's own default
    bins = inspect.signature(expected_calibration_error).parameters["n_bins"].default
    assert f"ECE over {bins} equal-width confidence bins" in printed
    # beside the calibrators a scikit-learn user would otherwise reach for (issue 18)
    assert {"CalibratedCV sigmoid", "CalibratedCV isotonic"} <= set(rows)
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


def test_example_outputs_go_to_an_ignored_directory():
    """The examples save their pictures under examples_output/, which git ignores: running
    them in a checkout leaves no untracked file behind."""
    for path in (ROOT / "examples").glob("*.py"):
        source = path.read_text()
        if '"--out"' in source:
            assert f'"examples_output/{path.stem}.png"' in source or (
                f'OUT = "examples_output/{path.stem}.png"' in source
            ), path.name
    assert "/examples_output/" in (ROOT / ".gitignore").read_text().splitlines()
    if (ROOT / ".git").exists() and shutil.which("git"):
        probe = "examples_output/quickstart.png"
        result = subprocess.run(
            ["git", "check-ignore", "-q", probe], cwd=ROOT, capture_output=True, timeout=60
        )
        assert result.returncode == 0, f"git does not ignore {probe}"


def _lower_bounds():
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    bounds = {}
    for line in config["options"]["install_requires"].split("\n"):
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)>=([0-9.]+)\S*\s*", line)
        if match:
            bounds[match.group(1).lower()] = match.group(2)
    return bounds


def test_ci_tests_the_declared_minimum_versions():
    """.ci/run installs exactly the lower bounds of setup.cfg in a second environment and
    runs the tests marked `floors` there: a declared minimum that stops working fails CI."""
    script = (ROOT / ".ci" / "run").read_text()
    pins = dict(re.findall(r"\b([A-Za-z][A-Za-z0-9_.-]*)==([0-9][0-9.]*)", script))
    bounds = _lower_bounds()
    for name, version in bounds.items():
        if name == "torch":  # the floors run with the CPU build the README installs
            assert pins["torch"] == "2.13.0"
            continue
        assert pins.get(name) == version, f"{name}: setup.cfg says >={version}, .ci/run {pins}"
    floors = script[script.index("pins match them") :]
    assert "python -m pytest -m floors" in floors
    assert "pip install -e . " in floors


def test_the_floors_subset_covers_the_workflows():
    """The `floors` marker sits on the tests of fit and predict of both estimators,
    pickling, Pipeline and GridSearchCV (test_sklearn_compat), the README and the quickstart."""
    marked = {
        path.name
        for path in (ROOT / "tests").glob("test_*.py")
        if "pytest.mark.floors" in path.read_text()
    }
    assert {"test_sklearn_compat.py", "test_readme.py", "test_repo.py"} <= marked


def test_the_readme_says_how_long_the_test_command_takes():
    text = (ROOT / "README.md").read_text()
    after = text[text.index("```", text.index("```bash") + 3) :]
    first_paragraph = after[: after.index("\n\n", 4)]
    assert re.search(r"about \d+ minutes on CI's 2-core machine", first_paragraph)
