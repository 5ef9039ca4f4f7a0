"""Sphinx configuration of the API reference (``make docs``)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))
project = "hsspetsc"
author = "the hsspetsc developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_numpy_docstring = True
html_theme = "alabaster"
exclude_patterns = ["_build", "api"]
suppress_warnings = ["autodoc.import_object"]


def _plain_bars(app, what, name, obj, options, lines):
    """The docstrings write norms as |x|; in RST a bar starts a substitution."""
    for i, line in enumerate(lines):
        lines[i] = line.replace("|", "\u2016")


def setup(app):
    app.connect("autodoc-process-docstring", _plain_bars)
