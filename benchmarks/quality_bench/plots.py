"""The figures: reliability diagram, OOD max-probability ECDFs, moons confidence, toy
regression. Each is drawn from the seed-0 predictors of one regime and one workflow."""

from __future__ import annotations

import os

import numpy as np

PLOT_CLF = ("MAP", "TS", "ensemble", "LA-LL", "LA-all")
PLOT_REG = ("MAP", "ensemble", "LA-LL", "LA-all")
CLF_WORKFLOW, REG_WORKFLOW = "a", "c"
PLOTTED = ("make_classification", "digits", "make_moons", "toy_cubic")
COLORS = {
    "MAP": "tab:red",
    "TS": "tab:orange",
    "ensemble": "tab:gray",
    "LA-LL": "tab:blue",
    "LA-LL+T": "tab:cyan",
    "LA-all": "tab:green",
    "LA-all+T": "tab:purple",
    "LA-all+auto": "tab:olive",
}


def make_plots(keep, regime, plot_dir, results_dir, grid_points=161):
    """Write the PNGs; returns [(path relative to the results, caption)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklaplace.plotting import ReliabilityDisplay

    out = []
    where = f"{regime} regime, seed 0"

    def save(fig, name, caption):
        path = plot_dir / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append((os.path.relpath(path, results_dir), caption))

    def shown(task, methods, workflow=CLF_WORKFLOW):
        models = keep.get((task, workflow), {})
        return [(m, *models[m]) for m in methods if m in models]

    def proba(pred, X):  # (an average of probabilities can exceed 1 by a rounding error)
        return np.exp(np.minimum(pred.log_proba(X), 0.0))

    if models := shown("make_classification", PLOT_CLF):
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for m, pred, task in models:
            ReliabilityDisplay.from_predictions(
                task.y_test,
                proba(pred, task.X_test),
                n_bins=10,
                labels=np.arange(task.n_classes),
                name=m,
                ax=ax,
                color=COLORS[m],
            )
        ax.set_title(f"make_classification, test rows, workflow ({CLF_WORKFLOW})")
        save(
            fig,
            "reliability_make_classification.png",
            f"Reliability diagram, make_classification (3 classes), test rows, workflow "
            f"({CLF_WORKFLOW}), {where} (10 bins).",
        )

    if models := shown("digits", PLOT_CLF):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for m, pred, task in models:
            for ax, X, title in (
                (axes[0], task.X_test, "in-distribution: digits 0-4"),
                (axes[1], task.ood["held-out classes"], "OOD: digits 5-9"),
            ):
                c = np.sort(proba(pred, X).max(1))
                ax.step(
                    c, np.arange(1, len(c) + 1) / len(c), where="post", label=m, color=COLORS[m]
                )
                ax.set(title=title, xlabel="max predicted probability", xlim=(0.2, 1.01))
        axes[0].set_ylabel("fraction of rows with confidence <= x")
        axes[1].legend(loc="upper left")
        save(
            fig,
            "ood_ecdf_digits.png",
            "ECDF of the max-probability on digits 0-4 (test) and 5-9 (never trained on), "
            f"workflow ({CLF_WORKFLOW}), {where}: a curve further up-left on the right panel "
            "means lower confidence on OOD rows.",
        )

    if models := shown("make_moons", PLOT_CLF):
        g = np.linspace(-6, 6, grid_points)
        xx, yy = np.meshgrid(g, g)
        grid = np.c_[xx.ravel(), yy.ravel()].astype(np.float32)
        fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.6), sharey=True)
        for ax, (m, pred, task) in zip(np.atleast_1d(axes), models, strict=True):
            conf = np.clip(proba(pred, grid).max(1), 0.5, 1.0).reshape(xx.shape)
            cs = ax.contourf(xx, yy, conf, levels=np.linspace(0.5, 1, 11), cmap="viridis")
            ax.scatter(*task.X_train.T, c=task.y_train, cmap="coolwarm", s=5, edgecolors="none")
            ax.set(title=m, xlabel="x1 (standardised)")
        np.atleast_1d(axes)[0].set_ylabel("x2 (standardised)")
        fig.colorbar(cs, ax=axes, label="max predicted probability", shrink=0.9)
        save(
            fig,
            "moons_confidence.png",
            f"make_moons, workflow ({CLF_WORKFLOW}), {where}: confidence (max-probability) "
            "over the plane; training rows on top.",
        )

    if models := shown("toy_cubic", PLOT_REG, REG_WORKFLOW):
        x = np.linspace(-7, 7, 400)[:, None].astype(np.float32)
        fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), sharey=True)
        for ax, (m, pred, task) in zip(np.atleast_1d(axes), models, strict=True):
            mean, std = pred.mean_std(x)
            mean = np.ravel(mean) * task.y_scale + task.y_shift
            std = np.ravel(std) * task.y_scale
            for k, alpha in ((2, 0.2), (1, 0.35)):
                ax.fill_between(
                    x[:, 0], mean - k * std, mean + k * std, alpha=alpha, color="tab:blue", lw=0,
                    label=f"+-{k} std",
                )  # fmt: skip
            ax.plot(x[:, 0], x[:, 0] ** 3, "k--", lw=1, label="x^3")
            ax.plot(x[:, 0], mean, color="tab:blue", label="mean")
            y_tr = task.y_train * task.y_scale + task.y_shift
            ax.scatter(task.X_train[:, 0], y_tr, c="k", s=12, zorder=3, label="train")
            ax.axvspan(-4, 4, color="0.9", zorder=0)
            ax.set(title=m, xlabel="x", ylim=(-250, 250))
        np.atleast_1d(axes)[0].set_ylabel("y")
        np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=8)
        save(
            fig,
            "toy_regression.png",
            "Toy regression of Ritter et al. (y = x^3 + N(0, 3^2), 20 training points, x in "
            f"[-4, 4] shaded), workflow ({REG_WORKFLOW}), {where}: mean with 1- and 2-std bands.",
        )
    return out
