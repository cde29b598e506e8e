"""Quickstart: make a trained skorch net honest about what it does not know.

An MLP trained on scikit-learn's digits the usual way (skorch's default ``ValidSplit(5)``
holds a fifth of the rows out of training), wrapped in ``FrozenEstimator`` and given to
``LaplaceClassifier`` with its defaults on the same rows: ``fit`` finds the rows the split
held out, checks them against the net's history, and tunes the prior precision and the
recalibration head on them. Prints MAP, Laplace and ``CalibratedClassifierCV(
FrozenEstimator(net))`` (sigmoid, isotonic and, from scikit-learn 1.8, temperature) fitted
on the same unseen rows, scored on the test rows (accuracy, log loss, ECE over the default
15 equal-width bins, Brier score), and saves a reliability diagram (by default to
``examples_output/quickstart.png``; the path is printed).

Run:  python examples/quickstart.py [--quick] [--out PNG]
"""

import argparse
import inspect
from pathlib import Path

import numpy as np
import torch
from scipy.special import softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from sklaplace import LaplaceClassifier
from sklaplace.metrics import expected_calibration_error


def make_net(n_features, n_classes, max_epochs):
    nn = torch.nn
    module = nn.Sequential(nn.Linear(n_features, 128), nn.ReLU(), nn.Linear(128, 128),
                           nn.ReLU(), nn.Linear(128, n_classes))  # fmt: skip
    # no train_split argument: skorch's default ValidSplit(5) holds out a fifth of the rows
    return NeuralNetClassifier(
        module, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        max_epochs=max_epochs, batch_size=64, verbose=0,
    )  # fmt: skip


OUT = "examples_output/quickstart.png"
ECE_BINS = inspect.signature(expected_calibration_error).parameters["n_bins"].default


def scores(y, proba, classes):
    return {
        "accuracy": accuracy_score(y, classes[proba.argmax(1)]),
        "log loss": log_loss(y, proba, labels=classes),
        "ECE": expected_calibration_error(y, proba, labels=classes),  # default bins
        # multiclass Brier score: squared error summed over classes, mean over rows
        "Brier": np.mean(np.sum((proba - (y[:, None] == classes)) ** 2, axis=1)),
    }


def main(quick=False, out=OUT):
    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

    # 1. Train the net as usual (long enough to over-fit, as nets usually are).
    net = make_net(X.shape[1], 10, max_epochs=30 if quick else 100).fit(X_train, y_train)
    # 2. Laplace around the trained net, with the defaults, on the rows it was trained on.
    laplace = LaplaceClassifier(FrozenEstimator(net)).fit(X_train, y_train)

    # MAP in float64 (skorch's float32 predict_proba rounds tiny probabilities to 0)
    with torch.no_grad():
        logits = net.forward(X_test).double().numpy()
    classes = laplace.classes_
    p_map, p_la = softmax(logits, axis=1), laplace.predict_proba(X_test)
    rows = {
        "MAP (the trained net)": scores(y_test, p_map, classes),
        "Laplace (defaults)": scores(y_test, p_la, classes),
    }
    # 3. The one-line calibrators, fitted on the same unseen rows that tuned Laplace.
    unseen = laplace.validation_indices_
    for method in ("sigmoid", "isotonic", "temperature"):
        calibrator = CalibratedClassifierCV(FrozenEstimator(net), method=method)
        try:
            calibrator.fit(X_train[unseen], y_train[unseen])
        except ValueError:  # method="temperature" needs scikit-learn >= 1.8
            continue
        p_cal = calibrator.predict_proba(X_test).astype(np.float64)
        p_cal /= p_cal.sum(axis=1, keepdims=True)  # the net's float32 rounding
        rows[f"CalibratedCV {method}"] = scores(y_test, p_cal, calibrator.classes_)
    names = list(rows["MAP (the trained net)"])
    print(f"{f'digits, {len(y_test)} test rows':<24}" + "".join(f"{n:>10}" for n in names))
    for method, vals in rows.items():
        print(f"{method:<24}" + "".join(f"{vals[n]:>10.4f}" for n in names))
    print(
        f"Unseen rows that tuned the prior: {len(laplace.validation_indices_)} of "
        f"{len(y_train)}, from {laplace.validation_source_!r} (the net's own validation "
        f"split); posterior over subset_of_weights={laplace.subset_of_weights_!r}; "
        f"prior precision {laplace.prior_precision_[0]:.3g}; recalibration head "
        f"{laplace.calibration_!r}. ECE over {ECE_BINS} "
        "equal-width confidence bins (expected_calibration_error's default)."
    )

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from sklaplace.plotting import ReliabilityDisplay
    except ImportError:
        print("matplotlib is not installed: skipping the reliability diagram.")
        return rows
    fig, ax = plt.subplots(figsize=(5, 6), layout="constrained")
    for name, proba in (("MAP", p_map), ("Laplace", p_la)):
        ReliabilityDisplay.from_predictions(y_test, proba, labels=classes, name=name, ax=ax)
    ax.set_title("Digits: reliability on the test rows")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"Saved the reliability diagram to {Path(out).resolve()}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for CI)")
    parser.add_argument("--out", default=OUT, help="where to save the PNG (default: %(default)s)")
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
