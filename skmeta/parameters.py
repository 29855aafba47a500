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
import inspect
import textwrap
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .modules import MLP

__all__ = ["Param", "Attribute", "build_table", "install", "SHARED_PARAMS", "SHARED_ATTRIBUTES",
           "FIRST_ORDER"]

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
    """One fitted attribute, for the "Attributes" section of the docstring."""

    type: str
    doc: str


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
                                _merged(cls, "_doc_variables"))


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
                    "batched matrix products (networks of linear layers, activations, dropout "
                    "and :class:`skmeta.modules.BatchNorm`; see "
                    ':func:`skmeta.functional.batchable`), ``"vmap"`` vectorises them with '
                    ':func:`torch.func.vmap` (any network it runs exactly), ``"loop"`` runs '
                    'tasks one by one (the reference). ``"auto"`` times the loop against the '
                    "fastest vectorised engine that applies on the first meta-batches and keeps "
                    "the faster; it uses the loop for modules that vmap cannot run exactly (see "
                    ":func:`skmeta.functional.vmap_support`) and for convolutions on a CPU.",
                    [StrOptions({"auto", "batched", "vmap", "loop"})]),
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
                         "same ``random_state``. See :mod:`skmeta.distributed`.", ["boolean"]),
    "compile": Param(False, "bool", "Passed to skorch (``torch.compile`` of the module).",
                     ["boolean"]),
    "torch_load_kwargs": Param(None, "dict or None", "Passed to skorch for loading parameters.",
                               [dict, None]),
}

FIRST_ORDER = Param(False, "bool", "Drop the second-order terms of the meta-gradient: the "
                    "inner gradients are treated as constants (first-order MAML).", ["boolean"])
"""The ``first_order`` parameter, shared by the algorithms that differentiate the inner loop."""

SHARED_ATTRIBUTES: dict[str, Attribute] = {
    "module_": Attribute("torch.nn.Module", "The network holding the meta-parameters."),
    "inner_state_": Attribute("skmeta.base.InnerState", "The inner rule's learnable state (e.g. "
                              "learned inner learning rates), meta-learned with the network; "
                              "empty for plain gradient steps."),
    "history_": Attribute("skorch.History", "Per epoch: ``train_loss`` (the mean meta-training "
                          "loss) and, with a ``train_split``, ``valid_loss`` (the mean query loss "
                          "after adaptation on the validation tasks)."),
    "input_shape_": Attribute("tuple of int", "The shape of one example."),
    "n_outputs_": Attribute("int", "The network's output size."),
    "engine_": Attribute("dict", 'The engine used for ``"train"`` and ``"adapt"`` work (decided '
                         'by timing with ``engine="auto"``).'),
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
