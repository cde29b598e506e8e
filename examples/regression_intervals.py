"""90% prediction intervals on the diabetes data: the defaults vs the evidence.

An MLP is trained with skorch on 70% of scikit-learn's bundled diabetes data (features
standardised, the target standardised for training) with skorch's default
``train_split``, which holds a fifth of those rows out of training. The trained net is
frozen and wrapped twice, with ``normalize_y=True`` so that the estimators take and
return the target in its own units:

* ``LaplaceRegressor`` with its defaults: ``fit`` finds the rows the net's split held out
  and uses half of them to tune the prior precision and the noise (``"holdout"``), the
  other half to calibrate split-conformal intervals (``interval="auto"``: conformal when
  there are unseen rows; ``interval_`` tells);
* ``sigma_noise="marglik"``, ``prior_precision="marglik"``, ``interval="gaussian"``: noise
  and prior from the Laplace evidence of the training rows, Gaussian intervals.

The script prints the coverage (:func:`sklaplace.metrics.interval_coverage`) and mean
width of the 90% intervals on the test rows; the figure shows the test rows sorted by
predicted value, with each model's intervals, targets outside in red.

What the picture shows, on this seed: the conformal intervals cover 0.91 of the test
rows at a mean width of 192. The evidence over every layer takes a larger noise (65
against 54 tuned on the unseen rows, in target units), so its Gaussian intervals cover
0.95 at a mean width of 273: wider than 90% needs. The conformal guarantee holds on
average over new rows like the calibration rows, not on every test set: with about 30
calibration rows it moves by a few points (``--quick``, a net trained for fewer epochs:
0.89).

Run:  python examples/regression_intervals.py [--quick] [--out PNG]
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetRegressor

from sklaplace import LaplaceRegressor
from sklaplace.metrics import interval_coverage, interval_width


def main(quick=False, out="examples_output/regression_intervals.png"):
    torch.manual_seed(0)
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = (scaler.transform(a).astype(np.float32) for a in (X_train, X_test))

    module = torch.nn.Sequential(torch.nn.Linear(10, 50), torch.nn.ReLU(), torch.nn.Linear(50, 1))
    net = NeuralNetRegressor(  # skorch's default train_split: ValidSplit(5)
        module, optimizer=torch.optim.Adam, lr=1e-3, max_epochs=50 if quick else 200,
        batch_size=32, verbose=0,
    )  # fmt: skip
    # normalize_y standardises y as below (mean, population std): train the net the same way
    net.fit(X_train, ((y_train - y_train.mean()) / y_train.std()).astype(np.float32)[:, None])

    # random_state fixes which unseen rows tune and which calibrate: with None, every fit
    # draws new halves, so two fits of the same data can tune another prior and interval.
    models = {
        "defaults": LaplaceRegressor(FrozenEstimator(net), normalize_y=True, random_state=0),
        "evidence": LaplaceRegressor(
            FrozenEstimator(net),
            normalize_y=True,
            prior_precision="marglik",
            sigma_noise="marglik",
            interval="gaussian",
        ),
    }
    results = {}
    for name, laplace in models.items():
        laplace.fit(X_train, y_train)
        lower, upper = laplace.predict_interval(X_test, confidence=0.9)
        coverage = interval_coverage(y_test, lower, upper)
        results[name] = (laplace.predict(X_test), lower, upper, coverage)
        print(
            f"{name:>8}: interval_={laplace.interval_!r}, unseen rows from "
            f"{laplace.validation_source_}, sigma_noise {laplace.sigma_noise_ * y_train.std():.1f}"
            f"; test coverage {coverage:.3f}, mean width {interval_width(lower, upper):.1f}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(results["defaults"][0])
    rank = np.arange(len(order))
    fig, axes = plt.subplots(
        2, 1, figsize=(8, 5.6), sharex=True, sharey=True, layout="constrained"
    )
    for ax, (name, (mean, lower, upper, coverage)) in zip(axes, results.items(), strict=True):
        lo, up, yt = lower[order], upper[order], y_test[order]
        outside = (yt < lo) | (yt > up)
        ax.fill_between(rank, lo, up, color="C0", alpha=0.25, step="mid", label="90% interval")
        ax.plot(rank, mean[order], "C0", lw=1, label="predictive mean")
        ax.scatter(rank[~outside], yt[~outside], s=8, c="k", label="inside")
        ax.scatter(rank[outside], yt[outside], s=12, c="C3", label="outside")
        ax.set_title(f"{models[name].interval_} intervals ({name}): test coverage {coverage:.2f}")
        ax.set_ylabel("disease progression")
    axes[0].legend(fontsize=8, loc="upper left", ncols=2)
    axes[1].set_xlabel("diabetes test rows, sorted by the predicted value")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"Saved the figure to {Path(out).resolve()}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for CI)")
    parser.add_argument(
        "--out",
        default="examples_output/regression_intervals.png",
        help="where to save the PNG (default: %(default)s)",
    )
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
