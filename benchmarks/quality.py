"""Uncertainty quality of sklaplace in the workflows users run.

Five classification tasks (breast cancer, wine, digits, make_classification, make_moons;
OOD rows: held-out classes, inputs scaled by 2/5/10, noise) and four regression tasks
(diabetes, a heteroscedastic 1-D task, the toy cubic of Ritter et al., make_friedman1), in
two training regimes, measured in four workflows: (a) an unfitted net trained inside
``fit``; (b) ``FrozenEstimator`` of a net trained with skorch's default ``train_split``, fit
on the same rows; (c) ``FrozenEstimator`` of a net trained with ``train_split=None``, fit
with ``X_val``/``y_val``; (d) as (c) without ``X_val``. Against MAP, temperature scaling on
the same unseen rows and a deep ensemble of five nets. The code lives in
``benchmarks/quality_bench/`` (tasks, nets, methods, workflows, metrics, summary, tables,
diagnostics, report, plots, run).

Run:  python benchmarks/quality.py [--quick] [--seeds N] [--out-dir DIR] [--rows FILE] [--no-plots]
The full run writes benchmarks/RESULTS_quality.md and the plots in docs/_static/quality/;
with --out-dir both go to DIR (with the raw per-seed rows, quality_rows.json).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_bench.run import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
