"""Two moons: confidence of MAP vs Laplace on a grid much larger than the data.

An MLP trained with skorch on scikit-learn's ``make_moons`` is, like most ReLU nets,
confident almost everywhere: far from the data its top-class probability goes to 1. The
same net, frozen and wrapped in a last-layer Kronecker Laplace approximation (prior
precision chosen by the evidence, ``"marglik"``), keeps the decision boundary and lowers
the confidence near it, and far from the data its confidence stays below 1.

What the picture shows, honestly: far from the data the Laplace confidence levels off at
about 0.93 (right panel: mean over a circle of growing radius), while the MAP confidence
goes to 1. That is all a last-layer posterior on a ReLU net can do (the logits' mean and
standard deviation both grow linearly away from the data, so their ratio, which sets the
probit confidence, tends to a constant): the confidence does not fall towards 1/2 away
from the data, and on this net it is about as high far away as on the training points.
A smaller prior precision lowers it everywhere, not only far away.

Run:  python examples/classification_2d.py [--quick] [--out PNG]
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_moons
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier

from sklaplace import LaplaceClassifier


def main(quick=False, out="examples_output/classification_2d.png"):
    torch.manual_seed(0)
    X, y = make_moons(n_samples=200, noise=0.15, random_state=0)
    X = X.astype(np.float32)
    module = torch.nn.Sequential(
        torch.nn.Linear(2, 50),
        torch.nn.ReLU(),
        torch.nn.Linear(50, 50),
        torch.nn.ReLU(),
        torch.nn.Linear(50, 2),
    )
    net = NeuralNetClassifier(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=100 if quick else 300,
        batch_size=len(X),
        train_split=None,
        verbose=0,
    ).fit(X, y)
    laplace = LaplaceClassifier(
        FrozenEstimator(net), subset_of_weights="last_layer", prior_precision="marglik"
    ).fit(X, y)
    print(f"prior precision by evidence: {laplace.prior_precision_[0]:.3g}")

    xx, yy = np.meshgrid(np.linspace(-4, 5, 150), np.linspace(-4, 4.5, 150))
    grid = np.c_[xx.ravel(), yy.ravel()].astype(np.float32)
    angles = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    circle = np.c_[np.cos(angles), np.sin(angles)]
    radii = np.geomspace(0.25, 64, 25)
    models = {"MAP (trained net)": net, "Laplace, last layer, kron": laplace}
    confidence, radial = {}, {}
    for name, model in models.items():
        confidence[name] = model.predict_proba(grid).max(axis=1)
        rings = [(0.5, 0.25) + r * circle for r in radii]  # centred on the moons
        radial[name] = [model.predict_proba(p.astype(np.float32)).max(1).mean() for p in rings]
        on_data = model.predict_proba(X).max(axis=1).mean()
        print(
            f"{name}: mean confidence on the training points {on_data:.3f}, "
            f"at radius {radii[-1]:.0f} {radial[name][-1]:.3f}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    fig.get_layout_engine().set(wspace=0.08)
    for ax, (name, conf) in zip(axes[:2], confidence.items(), strict=True):
        mesh = ax.contourf(
            xx, yy, conf.reshape(xx.shape), levels=np.linspace(0.5, 1, 11), cmap="viridis"
        )
        ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=6, edgecolors="k", linewidths=0.3)
        ax.set_title(name, fontsize=10)
    fig.colorbar(mesh, ax=axes[:2], label="confidence (top-class probability)")
    for name, values in radial.items():
        axes[2].semilogx(radii, values, marker=".", label=name)
    axes[2].set_xlabel("radius of a circle around the data")
    axes[2].set_title("mean confidence on the circle", fontsize=10)
    axes[2].set_ylim(0.5, 1.01)
    axes[2].legend(fontsize=8, loc="lower right")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    print(f"Saved the figure to {Path(out).resolve()}")
    return radial


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for CI)")
    parser.add_argument(
        "--out",
        default="examples_output/classification_2d.png",
        help="where to save the PNG (default: %(default)s)",
    )
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
