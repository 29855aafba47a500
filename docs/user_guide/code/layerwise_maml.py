"""MAML with a learned inner learning rate per layer (the worked example of "Extending").

Between MAML (one inner learning rate for everything) and Meta-SGD (one per weight):
one learned rate per parameter tensor, initialised to ``inner_lr``. The whole algorithm
is an inner-loop rule with learnable state (the per-task objective is the shell's
default, MAML's query loss), and two thin
public classes. ``tests/test_extending_guide.py`` runs skmeta's contract on it.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from skmeta.estimator import FIRST_ORDER, BaseMetaLearner, MetaClassifierMixin, MetaRegressorMixin
from skmeta.functional import InnerRule, Params

__all__ = ["LayerwiseMAMLRegressor", "LayerwiseMAMLClassifier", "layerwise_lr"]


def layerwise_lr(inner_lr: float) -> InnerRule:
    """A learned learning rate per parameter tensor, initialised to ``inner_lr``."""

    def init(params: Mapping[str, Tensor]) -> Params:
        return {name: p.detach().new_tensor(inner_lr) for name, p in params.items()}

    def update(fast: Params, grads: Mapping[str, Tensor], state: Mapping[str, Tensor],
               step: int) -> Params:
        return {name: p - state[name] * grads[name] for name, p in fast.items()}

    return InnerRule(init, update, name=f"layerwise_lr({inner_lr})")


class _BaseLayerwiseMAML(BaseMetaLearner):
    """MAML whose inner step uses a learned rate per parameter tensor."""

    _params = {"first_order": FIRST_ORDER}

    def get_inner_rule(self, inner_lr):
        return layerwise_lr(inner_lr)  # learned rates: adapt(inner_lr=...) is refused

    def uses_second_order(self):
        return not self.first_order


class LayerwiseMAMLRegressor(MetaRegressorMixin, _BaseLayerwiseMAML):
    """MAML with a learned inner learning rate per layer, for regression.

    Examples
    --------
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=50, random_state=0)
    >>> est = LayerwiseMAMLRegressor(k_shot=10, max_epochs=1, verbose=0).fit(tasks)
    >>> len(est.inner_state_.tensors())  # one rate per parameter tensor
    6
    """


class LayerwiseMAMLClassifier(MetaClassifierMixin, _BaseLayerwiseMAML):
    """MAML with a learned inner learning rate per layer, for few-shot classification.

    Examples
    --------
    >>> LayerwiseMAMLClassifier(n_way=3).n_way
    3
    """
