"""skmeta's benchmark suite (not part of the installed package, not tests).

Run all of it with ``python -m benchmarks`` from the repository root, or one script alone,
e.g. ``python benchmarks/sinusoid.py --quick``. See ``benchmarks/README.md``.
"""
