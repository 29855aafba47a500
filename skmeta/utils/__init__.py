"""Utilities for algorithm authors: :mod:`skmeta.utils.estimator_checks`."""
