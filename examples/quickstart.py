"""Quickstart: make a trained skorch net honest about what it does not know.

Trains an MLP on scikit-learn's bundled digits, wraps it in a Laplace approximation and
prints MAP vs Laplace (accuracy, log loss, expected calibration error, Brier score), then
saves a reliability diagram. The prior precision is tuned with GridSearchCV on a held-out
validation split, with the net frozen so that it is never retrained.

Run:  python examples/quickstart.py [--quick] [--out reliability.png]
"""

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss
from sklearn.model_selection import GridSearchCV, PredefinedSplit, train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from sklaplace import LaplaceClassifier
from sklaplace.metrics import expected_calibration_error


def make_net(n_features, n_classes, max_epochs):
    nn = torch.nn
    module = nn.Sequential(nn.Linear(n_features, 128), nn.ReLU(), nn.Linear(128, 128),
                           nn.ReLU(), nn.Linear(128, n_classes))  # fmt: skip
    return NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        max_epochs=max_epochs, batch_size=64, train_split=None, verbose=0,
    )  # fmt: skip


def scores(y, proba, classes):
    return {
        "accuracy": accuracy_score(y, classes[proba.argmax(1)]),
        "log loss": log_loss(y, proba, labels=classes),
        "ECE": expected_calibration_error(y, proba, labels=classes),
        "Brier": brier_score_loss(y, proba, labels=classes),
    }


def main(quick=False, out="reliability.png"):
    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    split = train_test_split(X_rest, y_rest, test_size=0.25, random_state=0)
    X_train, X_val, y_train, y_val = split

    # 1. Train the net as usual (long enough to over-fit, as nets usually are).
    net = make_net(X.shape[1], 10, max_epochs=30 if quick else 100).fit(X_train, y_train)

    # 2. Laplace with the net frozen; tune the prior precision on the validation rows.
    #    PredefinedSplit: curvature from the training rows, log loss on the validation rows.
    X_fit = np.concatenate([X_train, X_val])
    y_fit = np.concatenate([y_train, y_val])
    fold = np.r_[np.full(len(y_train), -1), np.zeros(len(y_val))]

    def tuned(subset):
        search = GridSearchCV(
            LaplaceClassifier(FrozenEstimator(net), subset_of_weights=subset),
            {"prior_precision": np.logspace(-2, 4, 13)},
            scoring="neg_log_loss",
            cv=PredefinedSplit(fold),
            refit=False,
        ).fit(X_fit, y_fit)
        best = search.best_params_["prior_precision"]
        laplace = LaplaceClassifier(
            FrozenEstimator(net), subset_of_weights=subset, prior_precision=best
        )
        return laplace.fit(X_train, y_train), best

    laplace, best = tuned("last_layer")
    every_layer, best_all = tuned("all")
    # For comparison: the prior precision that maximises the evidence (no validation data).
    evidence = LaplaceClassifier(FrozenEstimator(net), prior_precision="marglik")
    evidence.fit(X_train, y_train)

    classes = laplace.classes_
    p_map = net.predict_proba(X_test)
    p_la = laplace.predict_proba(X_test)
    rows = {"MAP (trained net)": scores(y_test, p_map, classes)}
    rows[f"Laplace, prior tuned on val. ({best:.3g})"] = scores(y_test, p_la, classes)
    rows[f"  all layers, prior tuned on val. ({best_all:.3g})"] = scores(
        y_test, every_layer.predict_proba(X_test), classes
    )
    tau = evidence.prior_precision_[0]
    rows[f"Laplace, prior by evidence ({tau:.3g})"] = scores(
        y_test, evidence.predict_proba(X_test), classes
    )

    names = list(next(iter(rows.values())))
    print(f"{'digits, test set':<44}" + "".join(f"{n:>10}" for n in names))
    for method, vals in rows.items():
        print(f"{method:<44}" + "".join(f"{vals[n]:>10.4f}" for n in names))

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from sklaplace.plotting import ReliabilityDisplay
    except ImportError:
        print("matplotlib is not installed: skipping the reliability diagram.")
        return rows
    fig, ax = plt.subplots(figsize=(5, 5))
    ReliabilityDisplay.from_predictions(y_test, p_map, labels=classes, name="MAP", ax=ax)
    ReliabilityDisplay.from_predictions(y_test, p_la, labels=classes, name="Laplace", ax=ax)
    ax.legend(loc="lower right")
    ax.set_title("Digits: reliability of the top-class probability")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    print(f"Saved the reliability diagram to {out}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for CI)")
    parser.add_argument("--out", default="reliability.png", help="where to save the PNG")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
