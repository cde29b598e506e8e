"""Pickles carry the sklaplace version that wrote them (a warning on load across
versions, as scikit-learn does for its estimators); the HTML repr links the API page."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from _nets import classifier_net
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.utils import estimator_html_repr

import sklaplace
from sklaplace import InconsistentVersionWarning, LaplaceClassifier, LaplaceRegressor


@pytest.fixture(scope="module")
def fitted():
    X, y = make_classification(n_samples=100, n_features=4, random_state=0)
    torch.manual_seed(0)
    net = classifier_net(2, max_epochs=2).fit(X.astype("float32"), y)
    return LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)


def _dumped_by(version, est, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(sklaplace, "__version__", version)
        return pickle.dumps(est)


@pytest.mark.parametrize("fit", [True, False], ids=["fitted", "unfitted"])
def test_a_pickle_carries_the_version_and_loads_quietly_with_it(fitted, fit):
    est = fitted if fit else LaplaceRegressor(None)
    assert est.__getstate__()["_sklaplace_version"] == sklaplace.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        restored = pickle.loads(pickle.dumps(est))
    assert "_sklaplace_version" not in vars(restored)


def test_a_pickle_of_another_version_warns_naming_both(fitted, monkeypatch):
    blob = _dumped_by("0.1.0", fitted, monkeypatch)
    with pytest.warns(InconsistentVersionWarning) as record:
        restored = pickle.loads(blob)
    (warning,) = [w for w in record if w.category is InconsistentVersionWarning]
    message = str(warning.message)
    assert "LaplaceClassifier" in message
    assert "version 0.1.0" in message and f"version {sklaplace.__version__}" in message
    assert "Refit" in message  # what to do
    assert warning.filename == __file__  # the user's line, not sklaplace's
    assert warning.message.original_version == "0.1.0"
    assert warning.message.current_version == sklaplace.__version__
    assert "_sklaplace_version" not in vars(restored)


def test_a_pickle_without_a_version_warns(fitted):
    state = fitted.__getstate__()
    del state["_sklaplace_version"]  # as the pickles of versions before 0.2 are
    est = LaplaceClassifier.__new__(LaplaceClassifier)
    with pytest.warns(InconsistentVersionWarning, match="from sklaplace version pre-0.2"):
        est.__setstate__(state)


@pytest.mark.parametrize("cls", [LaplaceClassifier, LaplaceRegressor])
@pytest.mark.parametrize(
    "version, root",
    [("0.2.0.dev0", "latest"), ("0.3.0", "0.3.0"), ("0.3.0+g1234", "latest")],
)
def test_the_html_repr_links_the_api_page(cls, version, root, monkeypatch):
    monkeypatch.setattr(sklaplace, "__version__", version)
    est = cls(None)
    url = f"https://sklaplace.readthedocs.io/en/{root}/api.html#sklaplace.{cls.__name__}"
    assert est._get_doc_link() == url
    assert f'href="{url}"' in estimator_html_repr(est)
