"""Sphinx configuration: the docs are Markdown (MyST); the API reference is autodoc.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors, as in CI).
"""

project = "kernelsdk"
author = "the kernelsdk developers"
copyright = "2026, the kernelsdk developers"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Sections such as "Args:" and "Raises:" in the docstrings are Google style.
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = "kernelsdk"
