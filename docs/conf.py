"""Sphinx configuration of the sklaplace documentation.

Build (warnings are errors):  python -m sphinx -W -b html docs docs/_build/html
Nothing is downloaded at build time: no intersphinx, and the builtin alabaster theme.
"""

import sklaplace
from sklaplace._estimators.base import docs_url

project = "sklaplace"
author = "the sklaplace developers"
copyright = "the sklaplace developers"
version = release = sklaplace.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path = []
html_static_path = ["_static"]
html_theme = "alabaster"
html_theme_options = {"description": "Laplace approximations for skorch nets"}
# where Read the Docs publishes this version (the estimators' HTML repr links its api.html)
html_baseurl = docs_url(release)

# autodoc: keep the signatures readable and the members in source order
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
# numpydoc: api.rst lists the methods explicitly, so no autosummary tables of members
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
