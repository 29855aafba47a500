"""skmeta: optimization-based meta-learning as scikit-learn estimators on skorch.

The package is laid out by floors, each importing only what stands below it:
:mod:`skmeta.algorithms` (one file per algorithm) on :mod:`skmeta.estimator` (the
shell: skorch's loop, adaptation, adapted models) on :mod:`skmeta.data` (tasks,
episodes, meta-batches) and :mod:`skmeta.io` (the safe file format), on the ground
floor :mod:`skmeta.functional` (the pure inner loop and engines),
:mod:`skmeta.parallel`, :mod:`skmeta.modules`, :mod:`skmeta.metrics` and
:mod:`skmeta.datasets`.
"""

from . import _paths
from ._version import __version__  # noqa: F401 - the package version
from .algorithms import (
    ANILClassifier,
    ANILRegressor,
    MAMLClassifier,
    MAMLPlusPlusClassifier,
    MAMLPlusPlusRegressor,
    MAMLRegressor,
    MetaSGDClassifier,
    MetaSGDRegressor,
    PretrainedClassifier,
    PretrainedRegressor,
    R2D2Classifier,
    R2D2Regressor,
    ReptileClassifier,
    ReptileRegressor,
)
from .data import EpisodeSampler, Task, TaskSplit, TaskTransformer
from .estimator import AdaptedClassifier, AdaptedRegressor
from .io import load, save

__all__ = [
    "MAMLRegressor",
    "MAMLClassifier",
    "MetaSGDRegressor",
    "MetaSGDClassifier",
    "ANILRegressor",
    "ANILClassifier",
    "MAMLPlusPlusRegressor",
    "MAMLPlusPlusClassifier",
    "R2D2Regressor",
    "R2D2Classifier",
    "ReptileRegressor",
    "ReptileClassifier",
    "PretrainedRegressor",
    "PretrainedClassifier",
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
