"""The estimators' hyper-parameters: one table per class, one word per concept.

Every meta-learner declares its hyper-parameters once, as :class:`Param` entries
in a ``_params`` class attribute (new defaults for inherited ones go in
``_param_defaults``, new descriptions in ``_param_docs``). The tables are merged
along the class hierarchy, and from the merged table come the class's
``__init__`` signature (keyword-only after ``module``, so
:func:`inspect.signature`, :func:`help` and the API reference list every
parameter with its default), the "Parameters" section of its docstring, and the
constraints that are validated when fitting starts (scikit-learn's
``_parameter_constraints``, never in ``__init__`` or ``set_params``).

Examples
--------
>>> import inspect
>>> from skmeta import MAMLRegressor
>>> params = inspect.signature(MAMLRegressor).parameters
>>> params["inner_lr"].default, params["first_order"].kind.name
(0.01, 'KEYWORD_ONLY')
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import textwrap
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import torch
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from skorch import NeuralNet
from torch import nn

from ..functional import ENGINES
from ..modules import MLP
from ..registry import register

__all__ = ["Param", "Attribute", "build_table", "install", "SHARED_PARAMS", "SHARED_ATTRIBUTES",
           "FIRST_ORDER", "ParameterizedNet"]

_SECTIONS = ("See Also", "Notes", "References", "Examples")


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyper-parameter: its default, numpydoc type, description and constraints.

    Parameters
    ----------
    default : object
        The default value.
    type : str
        The numpydoc type, e.g. ``"float"`` or ``"int or None"``.
    doc : str
        The description (may use ``{per_class}``, filled per estimator).
    constraints : list or None, default=None
        scikit-learn parameter constraints, checked when fitting starts; None
        checks nothing.
    """

    default: Any
    type: str
    doc: str
    constraints: list | None = None


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One fitted attribute: its numpydoc type and description, and whether it is saved.

    Parameters
    ----------
    type : str
        The numpydoc type.
    doc : str
        The description (the "Attributes" section of the class docstring).
    saved : bool, default=False
        Whether :func:`skmeta.save` stores it (plain data set at ``fit``, such as the
        layer an algorithm adapts); tensors and modules are saved on their own.
    """

    type: str
    doc: str
    saved: bool = False


def _merged(cls: type, name: str) -> dict:
    table: dict = {}
    for klass in reversed(cls.__mro__):
        table.update(vars(klass).get(name, {}))
    return table


def build_table(cls: type) -> dict[str, Param]:
    """The merged hyper-parameter table of ``cls`` (bases first, then overrides)."""
    table = _merged(cls, "_params")
    for name, default in _merged(cls, "_param_defaults").items():
        table[name] = dataclasses.replace(table[name], default=default)
    for name, doc in _merged(cls, "_param_docs").items():
        table[name] = dataclasses.replace(table[name], doc=doc)
    return table


def _show(value: Any) -> str:
    if isinstance(value, type):
        module = value.__module__
        if module.startswith("torch.nn.modules"):
            module = "torch.nn"
        elif module.startswith("torch.optim"):
            module = "torch.optim"
        return f"{module}.{value.__qualname__}"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _indent(text: str, spaces: int) -> str:
    return textwrap.fill(" ".join(text.split()), width=88, initial_indent=" " * spaces,
                         subsequent_indent=" " * spaces, break_on_hyphens=False,
                         break_long_words=False)


def _section(title: str, entries: list[tuple[str, str, str]]) -> str:
    lines = [f"    {title}", "    " + "-" * len(title)]
    for head, _, doc in entries:
        lines.append(f"    {head}")
        lines.append(_indent(doc, 8))
    return "\n".join(lines) + "\n"


def _document(doc: str, table: dict[str, Param], attributes: dict[str, Attribute],
              variables: dict[str, str]) -> str:
    entries = [(f"{name} : {p.type}, default={_show(p.default)}", name,
                p.doc.format(**variables)) for name, p in table.items()]
    entries.append(("**kwargs", "kwargs", "``module__*``, ``criterion__*``, ``optimizer__*`` and "
                    "``callbacks__*`` parameters, routed by skorch to the named component."))
    block = _section("Parameters", entries)
    if attributes:
        block += "\n" + _section("Attributes", [(f"{n} : {a.type}", n, a.doc.format(**variables))
                                                for n, a in attributes.items()])
    cut = len(doc)
    for title in _SECTIONS:
        at = doc.find(f"\n    {title}\n    {'-' * len(title)}")
        if at != -1:
            cut = min(cut, at + 1)
    head, tail = doc[:cut].rstrip() + "\n\n", doc[cut:]
    return head + block + ("\n" + tail if tail else "")


def install(cls: type, init: Callable | None) -> None:
    """Give ``cls`` its signature, docstring sections and constraints from its table.

    Called by the estimators' base class for every subclass, with the function
    that stores the parameters (None keeps an ``__init__`` a mixin defines).
    """
    table = build_table(cls)
    cls._param_table = table
    cls._attribute_table = _merged(cls, "_attributes")
    cls._parameter_constraints = {k: p.constraints for k, p in table.items()
                                  if p.constraints is not None}
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for name, p in table.items():
        kind = (inspect.Parameter.POSITIONAL_OR_KEYWORD if name == "module"
                else inspect.Parameter.KEYWORD_ONLY)
        parameters.append(inspect.Parameter(name, kind, default=p.default))
    parameters.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))

    if init is not None:  # else a mixin earlier in the bases has its own __init__
        def __init__(self, module=table["module"].default, **kwargs):  # noqa: N807
            init(self, module, **kwargs)

        __init__.__signature__ = inspect.Signature(parameters)
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__.__doc__ = f"Store the hyper-parameters of {cls.__name__} (see the class doc)."
        __init__._skmeta_generated = True
        cls.__init__ = __init__
    if cls.__doc__ and not cls.__name__.startswith("_"):
        cls.__doc__ = _document(cls.__doc__, table, _merged(cls, "_attributes"),
                                {"per_class": "", **_merged(cls, "_doc_variables")})


# ------------------------------------------------------- the shared parameters

_POS_INT = [Interval(Integral, 1, None, closed="left")]

SHARED_PARAMS: dict[str, Param] = {
    "module": Param(
        MLP, "torch.nn.Module class or instance",
        "The network. A class is instantiated with the ``module__*`` parameters; its "
        "``in_features`` and ``n_outputs`` are filled in from the data when the constructor "
        "has them and they are not set."),
    "criterion": Param(
        nn.MSELoss, "torch loss class",
        "The loss of a task's predictions, for inner and outer updates."),
    "optimizer": Param(
        torch.optim.Adam, "torch optimizer class",
        "The outer (meta) optimizer; ``optimizer__*`` parameters are routed to it."),
    "lr": Param(1e-3, "float", "The outer (meta) learning rate.",
                [Interval(Real, 0, None, closed="neither")]),
    "inner_lr": Param(0.01, "float", "The inner (task-level) step size, during meta-training "
                      "and adaptation.", [Interval(Real, 0, None, closed="neither")]),
    "inner_steps": Param(1, "int", "Inner steps per task during meta-training.", _POS_INT),
    "adapt_steps": Param(None, "int or None", "Inner steps taken by ``adapt``, ``score`` and "
                         "meta-validation; None means ``inner_steps``.",
                         [Interval(Integral, 0, None, closed="left"), None]),
    "k_shot": Param(5, "int", "Support examples per task{per_class}.", _POS_INT),
    "n_query": Param(None, "int or None", "Query examples per task{per_class}; None takes all "
                     "the rest of a task's examples (for a labelled pool, whose classes hold "
                     "many examples, None means 15).", [*_POS_INT, None]),
    "max_epochs": Param(10, "int", "Epochs; an epoch is one pass over the training tasks.",
                        [Interval(Integral, 0, None, closed="left")]),
    "batch_size": Param(25, "int", "Tasks per meta-update (the meta-batch); divided among "
                        "processes with ``distributed=True``.", _POS_INT),
    "engine": Param("auto", '{"auto", "batched", "vmap", "loop"}',
                    '``"batched"`` runs the inner loops of equally shaped tasks together as '
                    "batched matrix products (any network torch.fx traces whose layers are "
                    "registered: linear, convolution, activations, dropout, pooling, "
                    "normalisations, residual additions, concatenation...; see "
                    ':func:`skmeta.functional.batchable`), ``"vmap"`` vectorises them with '
                    ':func:`torch.func.vmap` (any network it runs exactly), ``"loop"`` runs '
                    'tasks one by one (the reference). ``"auto"`` times the loop against the '
                    "fastest vectorised engine that applies on the first meta-batches and keeps "
                    "the faster; it uses the loop for modules that vmap cannot run exactly (see "
                    ":func:`skmeta.functional.vmap_support`) and for convolutions on a CPU.",
                    [StrOptions({"auto", *ENGINES})]),
    "chunk_size": Param(None, "int or None", "At most this many tasks are vectorised at once "
                        "(bounds memory).", [*_POS_INT, None]),
    "random_state": Param(None, "int, RandomState instance or None",
                          "Seeds the module's initialisation, the task order, the support/query "
                          "splits and the episodes; the global torch and numpy random generators "
                          "are never touched.", ["random_state"]),
    "train_split": Param(None, "callable or None",
                         "A split of the *tasks* for meta-validation, e.g. "
                         ":class:`skmeta.TaskSplit`; None disables validation.", [callable, None]),
    "callbacks": Param(None, 'list of skorch callbacks, "disable" or None',
                       "skorch callbacks (e.g. :class:`skorch.callbacks.EarlyStopping` with a "
                       "``train_split``, :class:`skorch.callbacks.Checkpoint`, "
                       ":class:`skorch.callbacks.LRScheduler`), added to the default ones (epoch "
                       'timer, loss scoring, printing); "disable" turns all callbacks off.',
                       [list, StrOptions({"disable"}), None]),
    "warm_start": Param(False, "bool", "Continue from the current meta-parameters when ``fit`` "
                        "is called again.", ["boolean"]),
    "verbose": Param(1, "int", "skorch's per-epoch log (0 is silent).",
                     [Interval(Integral, 0, None, closed="left"), "boolean"]),
    "device": Param("cpu", "str, torch.device or None", '``"cpu"``, ``"cuda"`` or '
                    '``"cuda:N"``.', [str, torch.device, None]),
    "distributed": Param(False, "bool",
                         "Data-parallel meta-training over the ``torch.distributed`` process "
                         "group (e.g. launched with ``torchrun``): each process computes its "
                         "share of every meta-batch and the meta-gradients are averaged across "
                         "processes, giving the meta-parameters of a one-process run with the "
                         "same ``random_state``. See :mod:`skmeta.parallel`.", ["boolean"]),
    "compile": Param(False, "bool", "Passed to skorch (``torch.compile`` of the module).",
                     ["boolean"]),
    "torch_load_kwargs": Param(None, "dict or None", "Passed to skorch for loading parameters.",
                               [dict, None]),
}

FIRST_ORDER = Param(False, "bool", "Drop the second-order terms of the meta-gradient: the "
                    "inner gradients are treated as constants.", ["boolean"])
"""The ``first_order`` parameter, shared by the algorithms that differentiate the inner loop."""

SHARED_ATTRIBUTES: dict[str, Attribute] = {
    "module_": Attribute("torch.nn.Module", "The network holding the meta-parameters."),
    "inner_state_": Attribute("skmeta.estimator.InnerState", "The inner rule's learnable "
                              "state (e.g. learned inner learning rates), meta-learned with the "
                              "network; empty for plain gradient steps."),
    "history_": Attribute("skorch.History", "Per epoch: ``train_loss`` (the mean meta-training "
                          "loss) and, with a ``train_split``, ``valid_loss`` (the mean query loss "
                          "after adaptation on the validation tasks)."),
    "input_shape_": Attribute("tuple of int", "The shape of one example.", saved=True),
    "n_outputs_": Attribute("int", "The network's output size.", saved=True),
    "feature_names_in_": Attribute("ndarray of str", "The feature names of ``X`` at ``fit``, "
                                   "when they were given as a DataFrame with string column "
                                   "names (checked at ``adapt``, ``score`` and by the adapted "
                                   "models' ``predict``).", saved=True),
    "n_features_in_": Attribute("int", "The number of input values per example."),
    "seed_": Attribute("int", "The seed drawn from ``random_state`` at initialisation, from which "
                       "the network's initial weights and the task streams are drawn.",
                       saved=True),
    "engine_": Attribute("dict", 'The engine used for ``"train"`` and ``"adapt"`` work (decided '
                         'by timing with ``engine="auto"``), and under ``"batched"`` why the '
                         "batched engine was not used, when it could not run the network."),
}


def check_classes_not_names(estimator: Any) -> None:
    """Refuse ``module``, ``criterion`` or ``optimizer`` given as a string (``"MLP"``).

    skorch would call the string as a class ("'str' object is not callable"); the
    error names the class to import instead.
    """
    from sklearn.utils._param_validation import InvalidParameterError

    for name in ("module", "criterion", "optimizer"):
        value = getattr(estimator, name, None)
        if not isinstance(value, str):
            continue
        default = estimator._param_table[name].default
        where = ("skmeta.modules" if default.__module__.startswith("skmeta") else
                 "torch.nn" if issubclass(default, nn.Module) else "torch.optim")
        raise InvalidParameterError(
            f"The {name!r} parameter of {type(estimator).__name__} must be a class (or an "
            f"instance), not the string {value!r}. Pass the class itself, e.g. "
            f"'from {where} import {default.__name__}' and {name}={default.__name__} "
            "(the default).")


class ParameterizedNet(NeuralNet):
    """skorch's ``NeuralNet`` with skmeta's hyper-parameters: one table per class.

    Every subclass gets its ``__init__`` signature, docstring sections and
    constraints from its merged ``_params`` table (:func:`install`) and is registered
    (:mod:`skmeta.registry`). Parameters are stored as given and validated when
    fitting starts (``_check_params``), as scikit-learn recommends; an unknown
    keyword is refused with the closest known name.
    """

    _params: dict[str, Param] = SHARED_PARAMS
    _attributes: dict[str, Attribute] = SHARED_ATTRIBUTES
    _param_table: dict[str, Param] = {}
    _attribute_table: dict[str, Attribute] = {}
    _skmeta_role = "meta-learner"
    _skmeta_kind: str | None = None  # "regressor" or "classifier", from the target mixin

    # Fitted state starts as class attributes, so that __init__ sets parameters only
    # (skorch sets these three in __init__; its code only needs them to exist).
    history_ = None
    initialized_ = False
    virtual_params_: dict = {}

    # skorch attributes that skmeta does not expose as parameters
    iterator_train = None
    iterator_valid = None
    dataset = None
    predict_nonlinearity = None
    use_caching = "auto"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        owner = next(k for k in cls.__mro__ if "__init__" in vars(k))
        own = getattr(owner.__init__, "_skmeta_generated", False) or owner is ParameterizedNet
        install(cls, ParameterizedNet._store if own else None)
        register(cls)

    def __init__(self, module=MLP, **kwargs):
        self._store(module, **kwargs)

    def _store(self, module, **kwargs) -> None:
        # NeuralNet.__init__ would add skorch parameters that do not apply to tasks
        # (iterator_*, dataset, predict_nonlinearity, use_caching); we store ours and
        # reproduce the rest of its bookkeeping. vars().update bypasses skorch's
        # __setattr__, which treats torch modules set after construction specially.
        values = {"module": module}
        for name, p in self._param_table.items():
            if name != "module":
                values[name] = kwargs.pop(name, p.default)
        vars(self).update(values)
        self._check_deprecated_params(**kwargs)
        for fitted in ("history", "initialized_", "virtual_params_"):
            if fitted in kwargs:  # skorch's private constructor arguments
                setattr(self, fitted if fitted.endswith("_") else "history_", kwargs.pop(fitted))
        self._params_to_validate = set(kwargs.keys())
        vars(self).update(kwargs)

    # ------------------------------------------------------------------ params

    def _get_param_names(self):
        # skorch lists every public attribute; drop private bookkeeping such as
        # _params_to_validate, which skorch itself leaks into get_params.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    def set_params(self, **params):
        """Set parameters (validated when fitting starts, as scikit-learn recommends).

        Parameters
        ----------
        **params : dict
            Parameter names mapped to their new values, including ``module__*``,
            ``optimizer__*`` and ``callbacks__*``.

        Returns
        -------
        self : object
        """
        if "callbacks" in params:
            callbacks = params["callbacks"]
            # skorch initialises the callbacks now, from the value already set: set it
            # first, and leave a value that is not a list to the check at fit
            vars(self)["callbacks"] = callbacks
            if not (callbacks is None or isinstance(callbacks, (list, tuple))
                    or (isinstance(callbacks, str) and callbacks == "disable")):
                del params["callbacks"]
        return super().set_params(**params)

    def _check_params(self) -> None:
        check_classes_not_names(self)  # module="MLP": not called as a class
        validate_parameter_constraints(self._parameter_constraints,
                                       self.get_params(deep=False),
                                       caller_name=type(self).__name__)

    def _validate_params(self):
        known = (set(self._get_param_names()) | set(self._param_table)) \
            - self._params_to_validate
        for key in sorted(self._params_to_validate):
            if "__" in key or key.endswith("_") or key in self.prefixes_:
                continue
            if any(key.startswith(p) for p in self.prefixes_):
                continue  # skorch explains the missing double underscore
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{type(self).__name__} got an unexpected parameter {key!r}.{hint}")
        super()._validate_params()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False  # tasks carry their own targets
        tags.non_deterministic = False
        return tags
