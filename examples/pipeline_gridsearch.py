"""Tune the prior precision with GridSearchCV inside a Pipeline on mixed-type data.

The data are generated: two numeric columns and one categorical column (strings) in a
pandas DataFrame, three classes. A ``ColumnTransformer`` scales the numbers
(``StandardScaler``) and one-hot encodes the category (``OneHotEncoder``); the skorch
module starts with ``torch.nn.LazyLinear`` so that it takes whatever width the
transformer produces. ``GridSearchCV`` then searches ``prior_precision`` of the
``LaplaceClassifier`` at the end of the Pipeline (with its default posterior: every layer,
Kronecker-factored, for a net this small) by 3-fold cross-validated log loss. Here
the net is not frozen: every fold refits the preprocessing and retrains the net on its
training part, so the held-out fold is new to the net and the log loss is an honest
criterion. The figure shows validation log loss and accuracy against the prior precision:
the accuracy barely moves, the log loss has a minimum.

Run:  python examples/pipeline_gridsearch.py [--quick] [--out PNG]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from skorch import NeuralNetClassifier

from sklaplace import LaplaceClassifier


def make_data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "income": rng.lognormal(10, 0.5, n),
            "age": rng.uniform(18, 80, n),
            "region": rng.choice(["north", "south", "east", "west"], n),
        }
    )
    shift = df["region"].map({"north": 1.0, "south": -1.0, "east": 0.5, "west": 0.0})
    score = np.log(df["income"]) - 10 + (df["age"] - 50) / 20 + shift
    y = np.digitize(score + rng.normal(0, 0.5, n), [-0.5, 0.5])  # classes 0, 1, 2
    return df, y


def main(quick=False, out="examples_output/pipeline_gridsearch.png"):
    torch.manual_seed(0)
    X, y = make_data()
    preprocess = ColumnTransformer(
        [
            ("num", StandardScaler(), ["income", "age"]),
            ("cat", OneHotEncoder(sparse_output=False), ["region"]),
        ]
    )
    module = torch.nn.Sequential(torch.nn.LazyLinear(64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    net = NeuralNetClassifier(
        module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=20 if quick else 100,
        batch_size=64,
        train_split=None,
        verbose=0,
    )
    pipe = make_pipeline(preprocess, LaplaceClassifier(net, random_state=0))
    grid = np.logspace(-3, 3, 5 if quick else 13)
    search = GridSearchCV(
        pipe,
        {"laplaceclassifier__prior_precision": grid},
        scoring={"log_loss": "neg_log_loss", "accuracy": "accuracy"},
        refit="log_loss",
        cv=3,
    ).fit(X, y)
    best = search.best_params_["laplaceclassifier__prior_precision"]
    print(f"best prior precision: {best:.3g}")
    print(f"cross-validated log loss at the best value: {-search.best_score_:.4f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = search.cv_results_
    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    ax.errorbar(
        grid,
        -res["mean_test_log_loss"],
        res["std_test_log_loss"],
        marker="o",
        color="C0",
        label="log loss",
    )
    ax.axvline(best, color="0.6", ls=":", label=f"best: {best:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("prior_precision")
    ax.set_ylabel("3-fold validation log loss", color="C0")
    ax2 = ax.twinx()
    ax2.plot(grid, res["mean_test_accuracy"], marker="s", color="C1")
    ax2.set_ylabel("3-fold validation accuracy", color="C1")
    ax2.set_ylim(0, 1)
    ax.legend(loc="lower left")  # the corner both curves leave free
    ax.set_title("GridSearchCV over a Pipeline(ColumnTransformer, LaplaceClassifier)", fontsize=9)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"Saved the figure to {Path(out).resolve()}")
    return search


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (for CI)")
    parser.add_argument(
        "--out",
        default="examples_output/pipeline_gridsearch.png",
        help="where to save the PNG (default: %(default)s)",
    )
    args = parser.parse_args()
    main(quick=args.quick, out=args.out)
