"""The example gallery and the documentation site.

Every example in ``examples/`` runs in quick mode, and those that take ``--out`` save a
non-trivial PNG; every example has its command (and picture) in ``docs/gallery.rst``;
``docs/api.rst`` documents every public name; the Sphinx site builds with warnings as
errors. (The quickstart is run by ``test_repo.py``; here only its gallery entry is
checked.)
"""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import sklaplace
import sklaplace.plotting

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def draws(path):
    """Whether the example saves a picture (takes ``--out``)."""
    return '"--out"' in path.read_text()


NEEDS = {"pipeline_gridsearch.py": ["pandas"]}
# Examples that compare with scikit-learn's temperature scaling (scikit-learn >= 1.8; the
# floor that setup.cfg declares is older).
NEEDS_TEMPERATURE_SCALING = {"calibration_tabular.py"}


def has_temperature_scaling():
    from sklearn.calibration import CalibratedClassifierCV

    return any(
        "temperature" in str(c) for c in CalibratedClassifierCV._parameter_constraints["method"]
    )


@pytest.fixture
def close_figures():
    yield
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if p.name != "quickstart.py"], ids=lambda p: p.stem
)
def test_example_runs_in_quick_mode(path, tmp_path, monkeypatch, close_figures):
    for module in NEEDS.get(path.name, []) + (["matplotlib"] if draws(path) else []):
        pytest.importorskip(module)
    if path.name in NEEDS_TEMPERATURE_SCALING and not has_temperature_scaling():
        pytest.skip("CalibratedClassifierCV(method='temperature') needs scikit-learn >= 1.8")
    out = tmp_path / f"{path.stem}.png"
    argv = [str(path), "--quick"] + (["--out", str(out)] if draws(path) else [])
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(path), run_name="__main__")
    if not draws(path):
        return

    from matplotlib.image import imread

    assert out.stat().st_size > 10_000
    image = imread(out)
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05, "the picture is (nearly) blank"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_in_the_gallery(path):
    text = (DOCS / "gallery.rst").read_text()
    source = path.read_text()
    assert "--quick" in source
    assert len(source.splitlines()) < 130, "examples stay short"
    if not draws(path):
        assert f"python examples/{path.name}" in text
        return
    png = f"_static/gallery/{path.stem}.png"
    assert f".. image:: {png}" in text
    assert f"python examples/{path.name} --out docs/{png}" in text
    picture = DOCS / png
    assert picture.exists(), f"run the command in gallery.rst to make {png}"
    assert picture.stat().st_size < 150_000, "keep the committed pictures small"


def test_api_reference_lists_every_public_name():
    text = (DOCS / "api.rst").read_text()
    for name in sklaplace.__all__:
        assert re.search(rf"auto(class|function):: (sklaplace\.)?{name}\b", text), name
    for name in sklaplace.plotting.__all__:
        assert re.search(rf"autoclass:: (sklaplace\.plotting\.)?{name}\b", text), name
    assert "automodule:: sklaplace.metrics" in text  # :members: follows metrics.__all__


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="building the docs needs the docs extra (sphinx)")
    pytest.importorskip("numpydoc", reason="building the docs needs the docs extra (numpydoc)")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    cmd += ["-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for page in ("index", "user_guide", "api", "gallery", "contributing", "changelog"):
        assert (tmp_path / "html" / f"{page}.html").exists()
    # the estimators' HTML repr links their entry on the API page, where it is published
    api = (tmp_path / "html" / "api.html").read_text()
    for cls in (sklaplace.LaplaceClassifier, sklaplace.LaplaceRegressor):
        page, _, anchor = cls(None)._get_doc_link().partition("#")
        assert f'id="{anchor}"' in api
        assert f'<link rel="canonical" href="{page}"' in api
