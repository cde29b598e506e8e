"""Three ways to tune the prior precision, side by side on the wine data.

1. GridSearchCV over ``prior_precision`` with the net frozen, scored by held-out log loss.
2. ``prior_precision="marglik"``: maximise the Laplace evidence (no held-out data needed).
3. ``prior_precision="holdout"`` (the default): tune on rows the net never trained on
   inside ``fit`` (like ``LogisticRegressionCV``): the frozen net with the validation rows
   passed as ``X_val``/``y_val``, or an unfitted net trained inside ``fit`` without the
   rows it holds out (``validation_fraction``, as this net has ``train_split=None``).

Run:  python examples/tuning_routes.py [--quick]
"""

import argparse
import time

import numpy as np
import torch
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, PredefinedSplit, train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from sklaplace import LaplaceClassifier


def main(quick=False):
    torch.manual_seed(0)
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=0.4, random_state=0)
    module = torch.nn.Sequential(torch.nn.Linear(13, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    net = NeuralNetClassifier(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=1e-2,
        max_epochs=50 if quick else 200,
        train_split=None,
        verbose=0,
    )
    # Hold out 25% of the fitting rows from training: the GridSearchCV route scores on them.
    X_train, X_val, y_train, y_val = train_test_split(
        X_fit, y_fit, test_size=0.25, random_state=0, stratify=y_fit
    )
    net.fit(X_train, y_train)
    frozen = FrozenEstimator(net)
    with torch.no_grad():  # MAP probabilities in float64, from the logits
        p_map = torch.softmax(net.forward(X_test).double(), dim=1).numpy()
    results = {"MAP (trained net)": (p_map, None, 0.0)}

    # 1. GridSearchCV: curvature from the training rows, log loss on the validation rows.
    start = time.perf_counter()
    fold = np.r_[np.full(len(y_train), -1), np.zeros(len(y_val))]
    search = GridSearchCV(
        LaplaceClassifier(frozen),
        {"prior_precision": np.logspace(-2, 4, 25)},
        scoring="neg_log_loss",
        cv=PredefinedSplit(fold),
        refit=False,
    ).fit(np.r_[X_train, X_val], np.r_[y_train, y_val])
    best = search.best_params_["prior_precision"]
    clf = LaplaceClassifier(frozen, prior_precision=best).fit(X_train, y_train)
    results["GridSearchCV (val. log loss)"] = (
        clf.predict_proba(X_test),
        best,
        time.perf_counter() - start,
    )

    # 2. Evidence: no validation rows needed.
    start = time.perf_counter()
    clf = LaplaceClassifier(frozen, prior_precision="marglik").fit(X_train, y_train)
    results['prior_precision="marglik"'] = (
        clf.predict_proba(X_test),
        clf.prior_precision_[0],
        time.perf_counter() - start,
    )

    # 3. Held-out inside fit: the frozen net, tuned on the validation rows given as X_val.
    start = time.perf_counter()
    clf = LaplaceClassifier(frozen).fit(X_train, y_train, X_val=X_val, y_val=y_val)
    results['"holdout", X_val'] = (
        clf.predict_proba(X_test),
        clf.prior_precision_[0],
        time.perf_counter() - start,
    )
    #    Or an unfitted net, trained inside fit without the rows it holds out.
    start = time.perf_counter()
    clf = LaplaceClassifier(
        clone(net), prior_precision="holdout", validation_fraction=0.25, random_state=0
    ).fit(X_fit, y_fit)
    results['"holdout", unfitted net'] = (
        clf.predict_proba(X_test),
        clf.prior_precision_[0],
        time.perf_counter() - start,
    )

    print(f"{'wine, test set':<32}{'log loss':>10}{'prior':>10}{'seconds':>10}")
    for name, (proba, prior, seconds) in results.items():
        prior_text = "-" if prior is None else f"{prior:.3g}"
        print(f"{name:<32}{log_loss(y_test, proba):>10.4f}{prior_text:>10}{seconds:>10.2f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for CI)")
    main(quick=parser.parse_args().quick)
