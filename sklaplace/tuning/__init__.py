"""Tuning: the hyper-parameters' modes resolved to numbers on the fitted state's objectives,
the recalibration head, and the conformal scores of the intervals.

See the module map in ``docs/contributing.rst``.
"""
