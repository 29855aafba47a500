"""Models adapted to one task: what ``adapt`` returns.

An adapted model is small and plain: a copy of the network holding the task's
adapted weights as leaf tensors (no autograd graph, no meta-learner), the device
and, for classifiers, the task's labels. It pickles with pickle and joblib, saves
in the safe format (:func:`skmeta.save`), and a model adapted on CUDA loads on a
machine without CUDA (on the CPU, with a warning).
"""

from __future__ import annotations

import copy
import textwrap
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError
from skorch.exceptions import DeviceWarning
from torch import nn

from ..data.checks import check_features
from ..functional import BayesLinearPosterior, bayes_linear_predict, inner_step
from ..io import SafeFileMixin
from ..registry import register_adapted
from .features import check_feature_names
from .parameters import Attribute

__all__ = ["AdaptedRegressor", "AdaptedClassifier", "copy_module", "FIELDS"]


def copy_module(module: nn.Module, params: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``module`` holding ``params`` (detached) and clones of its buffers.

    Every submodule and every dict attribute (parameters, buffers, submodules,
    hooks) is copied, so the copy is independent; other attributes are shared,
    as they are configuration. Several times cheaper than :func:`copy.deepcopy`.

    Parameters
    ----------
    module : nn.Module
        The network.
    params : mapping of str to Tensor
        A value for every parameter of ``module``.

    Returns
    -------
    copy : nn.Module
        With parameters that do not require grad.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.estimator.adapted import copy_module
    >>> net = nn.Linear(2, 1)
    >>> twin = copy_module(net, {"weight": torch.zeros(1, 2), "bias": torch.ones(1)})
    >>> twin(torch.ones(1, 2)).item(), net.weight.abs().sum().item() > 0
    (1.0, True)
    """
    def copy_tree(m: nn.Module, prefix: str) -> nn.Module:
        new = copy.copy(m)
        for key, value in vars(m).items():
            if isinstance(value, dict):
                object.__setattr__(new, key, copy.copy(value))
        for name in m._parameters:
            if m._parameters[name] is not None:
                new._parameters[name] = nn.Parameter(
                    params[prefix + name].detach().clone(), requires_grad=False)
        for name, b in m._buffers.items():
            if b is not None:
                new._buffers[name] = b.detach().clone()
        for name, child in m._modules.items():
            if child is not None:
                new._modules[name] = copy_tree(child, f"{prefix}{name}.")
        return new

    return copy_tree(module, "")


#: The fields of an adapted model, declared once: documented in the classes' docstrings,
#: set by :meth:`_AdaptedModel.from_task`, and (``saved``) stored by :func:`skmeta.save`.
FIELDS: dict[str, Attribute] = {
    "classes_": Attribute("ndarray", "The task's labels (from the support set), in output "
                          "order.", saved=True),
    "module_": Attribute("torch.nn.Module", "The network holding the task's adapted weights "
                         "(evaluation mode; plain tensors that do not require grad)."),
    "device_": Attribute("str", 'The device the network is on (``"cpu"`` after loading a CUDA '
                         "model on a machine without CUDA).", saved=True),
    "input_shape_": Attribute("tuple of int", "The shape of one example.", saved=True),
    "n_features_in_": Attribute("int", "The number of input values per example (the product "
                                "of ``input_shape_``)."),
    "adapt_steps_": Attribute("int", "The number of inner steps taken on the support set.",
                              saved=True),
    "inner_lr_": Attribute("float or str", 'The inner learning rate of those steps '
                           '(``"learned"`` for rules without a fixed step size).', saved=True),
    "meta_estimator_": Attribute("str", "The class name of the meta-learner it was adapted "
                                 "from.", saved=True),
    "y_ndim_": Attribute("int", "1 if the support targets were 1-D (predictions are then 1-D "
                         "too), else 2.", saved=True),
    "step_": Attribute("int", "The index of the last inner step (read by per-step layers).",
                       saved=True),
    "module_class_": Attribute("type", "The network's class, to rebuild it from a file.",
                               saved=True),
    "module_kwargs_": Attribute("dict", "The network's constructor arguments.", saved=True),
    "feature_names_in_": Attribute("ndarray of str", "The meta-learner's feature names (when "
                                   "it was fitted on DataFrames), checked by ``predict``.",
                                   saved=True),
    "predictive_": Attribute("dict or None", "The posterior predictive distribution, for "
                             "algorithms that have one (``predict(X, return_std=True)``).",
                             saved=True),
    "interval_": Attribute("dict or None", "The conformal calibration of its intervals "
                           "(``predict_interval``), for models adapted through "
                           ":class:`skmeta.intervals.ConformalMetaRegressor`.", saved=True),
}
_DOCUMENTED = ("module_", "device_", "input_shape_", "n_features_in_", "adapt_steps_",
               "inner_lr_", "meta_estimator_", "y_ndim_")


def _attributes_doc(names) -> str:
    return "".join(f"\n    {n} : {FIELDS[n].type}\n" + textwrap.fill(
        FIELDS[n].doc, 80, initial_indent=" " * 8, subsequent_indent=" " * 8) for n in names)


class _AdaptedModel(SafeFileMixin, BaseEstimator):
    """A model adapted to one task: a module copy with the task's weights."""

    _skmeta_role = "adapted"
    step_: int | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            register_adapted(cls)

    @classmethod
    def saved_fields(cls) -> tuple[str, ...]:
        """The fields :func:`skmeta.save` stores (the network is saved on its own)."""
        return tuple(k for k, a in FIELDS.items() if a.saved)

    @classmethod
    def from_task(cls, module: nn.Module, *, classes, y_ndim: int, device, input_shape,
                  meta_estimator: str, adapt_steps: int, inner_lr, feature_names_in_=None,
                  module_class_=None, module_kwargs_=None) -> _AdaptedModel:
        """The model of one task: ``module`` holds its adapted weights (see :data:`FIELDS`)."""
        self = cls()
        self.module_ = module
        self.device_ = str(device) if device is not None else "cpu"
        self.input_shape_ = tuple(input_shape)
        self.n_features_in_ = int(np.prod(self.input_shape_))
        if feature_names_in_ is not None:
            self.feature_names_in_ = feature_names_in_
        self.y_ndim_ = y_ndim
        self.meta_estimator_ = meta_estimator
        self.adapt_steps_ = int(adapt_steps)
        self.inner_lr_ = inner_lr
        self.step_ = max(int(adapt_steps) - 1, 0)
        if classes is not None:
            self.classes_ = classes
        if module_class_ is not None:  # rebuildable from its class (safe format)
            self.module_class_, self.module_kwargs_ = module_class_, module_kwargs_
        return self

    def _forward(self, X) -> torch.Tensor:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"This {type(self).__name__} holds no model; get one from "
                                 "a meta-learner's adapt(X_support, y_support).")
        check_feature_names(self, X)  # scikit-learn's checks of DataFrame columns
        X = check_features(X, where="X")  # any array-like: copied if read-only or strided
        if tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(f"X has input shape {tuple(X.shape[1:])} but the model was adapted "
                             f"on {self.input_shape_}.")
        dtype = next((p.dtype for p in self.module_.parameters() if p.is_floating_point()),
                     torch.float32)
        with torch.no_grad(), inner_step(self.step_):
            out = self.module_(torch.as_tensor(X, dtype=dtype, device=self.device_))
        if not torch.isfinite(out).all():
            raise FloatingPointError(
                f"The adapted model's outputs are not finite (NaN or inf) on this X. It was "
                f"adapted with {getattr(self, 'adapt_steps_', '?')} step(s) of inner_lr="
                f"{getattr(self, 'inner_lr_', '?')}: if its predictions on the support set are "
                "finite, X is far outside the data it was adapted on (scale the features as "
                "in training); otherwise adapt again with a smaller inner_lr or fewer steps.")
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        if not str(self.device_).startswith("cpu"):
            state["module_"] = copy.deepcopy(self.module_).to("cpu")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        dev = torch.device(self.device_)
        if dev.type == "cuda":
            if torch.cuda.is_available():
                self.module_ = self.module_.to(dev)
            else:
                warnings.warn(f"This model was adapted on {self.device_}, which is not available "
                              "here; it was loaded on the CPU.", DeviceWarning, stacklevel=2)
                self.device_ = "cpu"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "module_")

    def fit(self, X, y=None):
        """Not supported: adapted models come from a meta-learner's ``adapt``.

        Raises
        ------
        TypeError
            Always; call ``meta_learner.adapt(X_support, y_support)`` instead.
        """
        raise TypeError(f"{type(self).__name__} is made by a meta-learner's adapt(X_support, "
                        "y_support); to adapt to other data, call adapt on the meta-learner.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from {getattr(self, 'meta_estimator_', '?')})"


class AdaptedRegressor(RegressorMixin, _AdaptedModel):
    __doc__ = """A regressor adapted to one task by a meta-learner's ``adapt``.

    Attributes
    ----------""" + _attributes_doc(_DOCUMENTED) + """

    Examples
    --------
    >>> import pickle
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=20, random_state=0)
    >>> maml = MAMLRegressor(k_shot=10, max_epochs=1, verbose=0, random_state=0).fit(tasks)
    >>> X, y = tasks[0]
    >>> adapted = maml.adapt(X[:10], y[:10], adapt_steps=5)
    >>> type(adapted).__name__, adapted.predict(X[10:]).shape
    ('AdaptedRegressor', (10,))
    >>> (pickle.loads(pickle.dumps(adapted)).predict(X) == adapted.predict(X)).all()
    np.True_
    """

    predictive_: dict | None = None
    interval_: dict | None = None

    def _shape(self, out: np.ndarray) -> np.ndarray:
        return out.ravel() if self.y_ndim_ == 1 and out.ndim == 2 and out.shape[1] == 1 else out

    def predict(self, X, return_std: bool = False):
        """Predict targets for ``X`` with the adapted weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, \\*input_shape)
            The examples.
        return_std : bool, default=False
            Also return the standard deviation of the posterior predictive
            distribution (scikit-learn's ``GaussianProcessRegressor`` and
            ``BayesianRidge`` convention), for models adapted by an algorithm with
            one (:class:`~skmeta.ALPaCARegressor`).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            1-D when the support targets were 1-D.
        y_std : ndarray of the shape of ``y_pred``
            Only with ``return_std=True``.
        """
        if not return_std:
            return self._shape(self._forward(X).cpu().numpy())
        if self.predictive_ is None:
            raise ValueError(f"This model (from {self.meta_estimator_}) has no predictive "
                             "distribution, so predict(X, return_std=True) does not apply "
                             "(algorithms with a Bayesian head give one). For prediction "
                             "intervals of any regressor, wrap it in "
                             "skmeta.intervals.ConformalMetaRegressor and use "
                             "predict_interval.")
        mean, var = _PREDICTIVES[self.predictive_["kind"]](self, X)
        return self._shape(mean), self._shape(np.sqrt(var))

    def predict_interval(self, X, *, confidence_level: float | None = None):
        """Prediction intervals for the targets of ``X`` (MAPIE's convention).

        Models adapted through :class:`skmeta.intervals.ConformalMetaRegressor`
        give its calibrated intervals, at the level it was calibrated for; models
        with a predictive distribution and no calibration (``ALPaCARegressor``)
        give the Gaussian interval ``mean +- z * std`` of their posterior
        predictive, which is only as good as the model (see
        :doc:`/user_guide/uncertainty`).

        Parameters
        ----------
        X : array-like of shape (n_samples, \\*input_shape)
            The examples.
        confidence_level : float or None, default=None
            For an uncalibrated predictive distribution: the probability of the
            interval (0.9 if None). A calibrated model only takes its own level.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
        y_pis : ndarray of shape (n_samples, 2, 1) or (n_samples, n_targets, 2, 1)
            The lower and upper bounds, for the one confidence level.
        """
        cal = self.interval_
        if cal is not None:
            level = float(cal["confidence_level"])
            if confidence_level is not None and not np.isclose(confidence_level, level):
                raise ValueError(f"This model's intervals are calibrated for confidence_level="
                                 f"{level}; got confidence_level={confidence_level}. Calibrate "
                                 "again (ConformalMetaRegressor(confidence_level=...)).")
            if cal["scaled"]:
                mean, std = self.predict(X, return_std=True)
                half = float(cal["quantile"]) * std
            else:
                mean = self.predict(X)
                half = np.full_like(mean, float(cal["quantile"]))
        elif self.predictive_ is not None:
            level = 0.9 if confidence_level is None else float(confidence_level)
            if not 0 < level < 1:
                raise ValueError(f"confidence_level must be in (0, 1); got {confidence_level!r}.")
            from scipy.stats import norm

            mean, std = self.predict(X, return_std=True)
            half = norm.ppf(0.5 + level / 2) * std
        else:
            raise ValueError(f"This model (from {self.meta_estimator_}) has no calibrated "
                             "intervals: wrap the meta-learner in "
                             "skmeta.intervals.ConformalMetaRegressor, conformalize it on "
                             "held-out tasks, and adapt through it.")
        return mean, np.stack([mean - half, mean + half], axis=-1)[..., None]


def _head_input(model: _AdaptedModel, X, head: str) -> torch.Tensor:
    """The input of submodule ``head`` when ``model``'s network runs on ``X``."""
    captured: list[torch.Tensor] = []
    handle = model.module_.get_submodule(head).register_forward_pre_hook(
        lambda module, args: captured.append(args[0]))
    try:
        model._forward(X)
    finally:
        handle.remove()
    return captured[-1]


def _bayes_linear_predictive(model: _AdaptedModel, X) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of a Bayesian linear head (``predictive_["kind"] == "bayes_linear"``):
    ``predictive_`` holds the head's name, whether it has a bias, the posterior covariance
    factor ``factor`` (relative to the noise) and ``noise_var`` per target."""
    info = model.predictive_
    with torch.no_grad():
        Phi = _head_input(model, X, info["head"]).to(torch.float64).cpu()
        if info["bias"]:
            Phi = torch.cat([Phi, Phi.new_ones(len(Phi), 1)], 1)
        factor = torch.as_tensor(np.asarray(info["factor"]), dtype=torch.float64)
        noise = torch.as_tensor(np.asarray(info["noise_var"]), dtype=torch.float64)
        _, var = bayes_linear_predict(BayesLinearPosterior(factor.new_zeros(len(factor), 1),
                                                           factor), Phi, noise)
    mean = model._forward(X).cpu().numpy()
    return mean, var.numpy()


# how an adapted model's stored predictive distribution predicts: kind -> (model, X) -> (mean,
# variance); an algorithm that stores another kind in ``predictive_`` adds its function here
_PREDICTIVES = {"bayes_linear": _bayes_linear_predictive}


class AdaptedClassifier(ClassifierMixin, _AdaptedModel):
    __doc__ = """A classifier adapted to one task by a meta-learner's ``adapt``.

    Attributes
    ----------""" + _attributes_doc(("classes_",) + _DOCUMENTED) + """

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import MAMLClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(10), 6)
    >>> X = rng.normal(size=(60, 3)) + y[:, None]
    >>> clf = MAMLClassifier(n_way=2, k_shot=2, n_query=2, n_episodes=10, max_epochs=1,
    ...                      verbose=0, random_state=0).fit(X, y)
    >>> adapted = clf.adapt(X[:12], np.repeat(["cat", "dog"], 6))
    >>> adapted.classes_.tolist(), adapted.predict_proba(X[:1]).shape
    (['cat', 'dog'], (1, 2))
    """

    def predict_proba(self, X):
        """Class probabilities of the task's classes, in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, \\*input_shape)
            The examples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        logits = self._forward(X)[:, :len(self.classes_)]
        return torch.softmax(logits, dim=-1).cpu().numpy()

    def predict(self, X):
        """The most likely of the task's labels for every row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, \\*input_shape)
            The examples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
