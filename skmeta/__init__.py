"""skmeta: optimization-based meta-learning as scikit-learn estimators on skorch."""

from ._version import __version__  # noqa: F401 - the package version
from .adapted import AdaptedClassifier, AdaptedRegressor
from .alpaca import ALPaCARegressor
from .anil import ANILClassifier, ANILRegressor
from .batching import TaskSplit
from .maml import MAMLClassifier, MAMLRegressor
from .mamlpp import MAMLPlusPlusClassifier, MAMLPlusPlusRegressor
from .metasgd import MetaSGDClassifier, MetaSGDRegressor
from .persistence import load, save
from .pretrained import PretrainedClassifier, PretrainedRegressor
from .r2d2 import R2D2Classifier, R2D2Regressor
from .reptile import ReptileClassifier, ReptileRegressor
from .tasks import EpisodeSampler, Task, TaskTransformer

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
    "ALPaCARegressor",
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
