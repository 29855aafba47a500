"""The estimator shell: skorch's loop on tasks, adaptation, adapted models, hyper-parameters.

:class:`BaseMetaLearner` is the shell every algorithm builds on; it holds its
collaborators as objects (a target strategy, an engine chooser, an adapter, a
process group) and calls only the algorithm's documented hooks.
"""

from .adapted import AdaptedClassifier, AdaptedRegressor
from .base import BaseMetaLearner, InnerState, MetaClassifierMixin, MetaRegressorMixin
from .parameters import FIRST_ORDER, Attribute, Param
from .targets import Targets, register_targets

__all__ = ["BaseMetaLearner", "MetaRegressorMixin", "MetaClassifierMixin", "InnerState",
           "AdaptedRegressor", "AdaptedClassifier", "Param", "Attribute", "FIRST_ORDER",
           "Targets", "register_targets"]
