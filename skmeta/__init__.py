"""skmeta: optimization-based meta-learning as scikit-learn estimators on skorch.

The package is laid out by floors, each importing only what stands below it:
:mod:`skmeta.algorithms` (one file per algorithm) on :mod:`skmeta.estimator` (the
shell: skorch's loop, adaptation, adapted models) on :mod:`skmeta.data` (tasks,
episodes, meta-batches) and :mod:`skmeta.io` (the safe file format), on the ground
floor :mod:`skmeta.functional` (the pure inner loop and engines),
:mod:`skmeta.parallel`, :mod:`skmeta.modules`, :mod:`skmeta.metrics` and
:mod:`skmeta.datasets`.
"""

from . import _paths, algorithms, intervals  # noqa: F401 - intervals adds its task scorers
from ._version import __version__  # noqa: F401 - the package version
from .algorithms import *  # noqa: F403 - every algorithm (skmeta.algorithms.__all__)
from .data import EpisodeSampler, Task, TaskSplit, TaskTransformer
from .estimator import AdaptedClassifier, AdaptedRegressor
from .io import load, save

__all__ = [
    *algorithms.__all__,
    "AdaptedRegressor",
    "AdaptedClassifier",
    "Task",
    "TaskSplit",
    "EpisodeSampler",
    "TaskTransformer",
    "save",
    "load",
]

_paths.install(__name__)
