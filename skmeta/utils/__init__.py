"""Utilities for algorithm authors: :mod:`skmeta.utils.estimator_checks` (the contract) and
:mod:`skmeta.utils.validation` (parameter constraints)."""
