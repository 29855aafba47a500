"""The algorithms: one file each, written against the estimator's documented hooks.

Each file defines a private base on :class:`skmeta.estimator.BaseMetaLearner` that
implements the algorithm contract (its inner-loop rule, its per-task objective or
pseudo-gradient, its target strategy, its schedules as callbacks) and thin public
regressor/classifier classes; see the "Extending" guide.
"""

from .alpaca import ALPaCARegressor
from .anil import ANILClassifier, ANILRegressor
from .maml import MAMLClassifier, MAMLRegressor
from .mamlpp import MAMLPlusPlusClassifier, MAMLPlusPlusRegressor
from .metasgd import MetaSGDClassifier, MetaSGDRegressor
from .pretrained import PretrainedClassifier, PretrainedRegressor
from .r2d2 import R2D2Classifier, R2D2Regressor
from .reptile import ReptileClassifier, ReptileRegressor

__all__ = ["MAMLRegressor", "MAMLClassifier", "MetaSGDRegressor", "MetaSGDClassifier",
           "ANILRegressor", "ANILClassifier", "MAMLPlusPlusRegressor", "MAMLPlusPlusClassifier",
           "R2D2Regressor", "R2D2Classifier", "ALPaCARegressor", "ReptileRegressor",
           "ReptileClassifier", "PretrainedRegressor", "PretrainedClassifier"]
