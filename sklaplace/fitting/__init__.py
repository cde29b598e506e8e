"""Fit's stages before tuning: the inputs checked, the rows that tune, the fitted state.

See the module map in ``docs/contributing.rst``.
"""
