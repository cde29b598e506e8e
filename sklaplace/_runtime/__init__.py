"""Plumbing every stage uses: the data loop over the net, the pass cache and its
fingerprints, the stamp of the fitted model, skorch glue, configuration, warnings, BLAS.

Nothing here knows the Laplace approximation; see ``docs/contributing.rst``.
"""
