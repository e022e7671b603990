"""Embedding a kernel in a running program (issue 11)."""
