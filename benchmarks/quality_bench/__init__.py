"""The uncertainty-quality benchmark of sklaplace; ``benchmarks/quality.py`` runs it.

Modules, in the order a run uses them: :mod:`.tasks` (data, splits, OOD rows),
:mod:`.nets` (skorch MLPs, regimes, float64 outputs), :mod:`.methods` (MAP, temperature
scaling, deep ensembles, the Laplace candidates), :mod:`.workflows` (the four ways users
fit, one cell at a time), :mod:`.metrics` (scores of one predictor), :mod:`.summary`
(medians, win-rates, targets), :mod:`.tables`, :mod:`.diagnostics` and :mod:`.report`
(the markdown), :mod:`.plots` (the figures) and :mod:`.run` (the command line).
"""
