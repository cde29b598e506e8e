"""Fit: its steps in order (:mod:`.steps`), the inputs checked (:mod:`.inputs`), the net and
the rows it never trained on (:mod:`.unseen`, :mod:`.holdout`), the fitted state
(:mod:`.state`).

See the module map and "The path of fit" in ``docs/contributing.rst``.
"""
