"""The layers the batched engine runs: a registry keyed by layer type, and traced networks.

The batched engine evaluates every task's network at once: inputs carry a leading
*task axis* ``(n_tasks, n, ...)`` and so may the parameters (one set per task). A
network is traced once with :mod:`torch.fx`; its graph is run with the batched
implementation registered for each layer type (:func:`register_batched_layer`) and
with batched versions of the tensor operations a ``forward`` commonly uses (additions
of residual branches, concatenation, activations, flatten, view and reshape). Layers
and operations with no batched implementation make the network *not batchable*, and
the estimators then run another engine, saying why.
"""

from __future__ import annotations

import builtins
import dataclasses
import operator
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor, fx, nn

__all__ = ["BatchedLayerFn", "NotBatchable", "register_batched_layer", "batched_layer",
           "batchable", "batched_forward", "batch_norm_per_task"]

BatchedLayerFn = Callable[..., Tensor]
"""``fn(layer, params, X, *args, **kwargs) -> out``: ``layer`` applied to every task at once.

``params`` holds the layer's own parameters by their local names (``"weight"``,
``"bias"``), each either with a leading task axis (one value per task) or without (one
value shared by every task); ``X`` and ``out`` carry the task axis: shape
``(n_tasks, n, ...)`` where one task's input would be ``(n, ...)``."""


class NotBatchable(ValueError):
    """The network has a layer or an operation the batched engine does not run.

    Its message says which, in one line (the estimators then run another engine and
    report it in ``engine_["batched"]``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.functional import NotBatchable, batched_forward
    >>> try:
    ...     batched_forward(nn.GRU(2, 1), {}, torch.zeros(1, 3, 2))
    ... except NotBatchable as e:
    ...     print(e)
    the network (GRU) has no batched implementation (see skmeta.functional.register_batched_layer)
    """


@dataclasses.dataclass(frozen=True)
class _Entry:
    fn: BatchedLayerFn
    supports: Callable[[nn.Module], str] | None


_REGISTRY: dict[type, _Entry] = {}
_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def register_batched_layer(layer_type: type[nn.Module], fn: BatchedLayerFn | None = None, *,
                           supports: Callable[[nn.Module], str] | None = None) -> Any:
    """Register the batched implementation of a layer type (usable as a decorator).

    The batched engine then runs networks holding layers of this type (or of a
    subclass that keeps its ``forward``). Registering a type again replaces its
    implementation.

    Parameters
    ----------
    layer_type : type of nn.Module
        The layer class.
    fn : callable or None, default=None
        ``fn(layer, params, X, *args, **kwargs) -> out`` (see :data:`BatchedLayerFn`):
        the layer on every task at once. It must compute, for each task ``t``, what
        ``layer`` computes on ``X[t]`` with the parameters of task ``t``. None returns
        a decorator.
    supports : callable or None, default=None
        ``supports(layer) -> reason``: an empty string when ``fn`` runs this layer's
        configuration exactly, otherwise why not (e.g. a padding mode it lacks).

    Returns
    -------
    fn : callable
        ``fn`` itself (or, when ``fn`` is None, a decorator that registers and
        returns its function).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.functional import batchable, register_batched_layer
    >>> class Scale(nn.Module):  # a layer with one learnable scale per feature
    ...     def __init__(self, d):
    ...         super().__init__()
    ...         self.weight = nn.Parameter(torch.ones(d))
    ...     def forward(self, X):
    ...         return X * self.weight
    >>> @register_batched_layer(Scale)
    ... def batched_scale(layer, params, X):
    ...     w = params["weight"]  # (d,) shared, or (n_tasks, d): one per task
    ...     return X * (w if w.dim() == 1 else w[:, None, :])
    >>> batchable(nn.Sequential(nn.Linear(2, 3), Scale(3)))
    (True, '')
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"layer_type must be a subclass of torch.nn.Module; got {layer_type!r}.")

    def add(f: BatchedLayerFn) -> BatchedLayerFn:
        if not callable(f):
            raise TypeError(f"fn must be callable (layer, params, X) -> Tensor; got {f!r}.")
        if supports is not None and not callable(supports):
            raise TypeError(f"supports must be callable (layer) -> str; got {supports!r}.")
        _REGISTRY[layer_type] = _Entry(f, supports)
        _PROGRAMS.clear()  # traces made under the old registry may change
        return f

    return add if fn is None else add(fn)


def batched_layer(layer: nn.Module) -> BatchedLayerFn | None:
    """The batched implementation registered for ``layer``'s type, or None.

    A subclass of a registered type uses its parent's implementation when it
    keeps the parent's ``forward``.

    Parameters
    ----------
    layer : nn.Module

    Returns
    -------
    fn : callable or None

    Examples
    --------
    >>> from torch import nn
    >>> from skmeta.functional import batched_layer
    >>> batched_layer(nn.Linear(2, 1)) is not None, batched_layer(nn.LSTM(2, 1))
    (True, None)
    """
    entry = _entry(layer)
    return None if entry is None else entry.fn


def _entry(layer: nn.Module) -> _Entry | None:
    kind = type(layer)
    for klass in kind.__mro__:
        entry = _REGISTRY.get(klass)
        if entry is not None:
            return entry if klass is kind or kind.forward is klass.forward else None
        if klass is nn.Module:
            break
    return None


# ------------------------------------------------------------- built-in layers


def _shift(dim: int) -> int:
    """A dimension of one task's tensor, in the tensor of every task (task axis first)."""
    return dim + 1 if dim >= 0 else dim


def _per_task(value: Tensor, like: Tensor, dims: int) -> Tensor:
    """``value`` (task axis first, or shared) shaped to broadcast against ``like``: its last
    ``dims`` axes align with the last ``dims`` of one task's tensor."""
    if value.dim() == dims:
        return value
    return value.reshape(value.shape[0], *([1] * (like.dim() - 1 - dims)), *value.shape[1:])


def _linear(layer: nn.Module, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
    weight, bias = params["weight"], params.get("bias")
    if weight.dim() == 2:  # shared by every task
        return nnf.linear(X, weight, bias)
    if X.dim() != 3:
        X3 = X.reshape(X.shape[0], -1, X.shape[-1])
        return _linear(layer, params, X3).reshape(*X.shape[:-1], weight.shape[1])
    if bias is None:
        return torch.bmm(X, weight.mT)
    if bias.dim() == 1:
        bias = bias.expand(weight.shape[0], -1)
    return torch.baddbmm(bias.unsqueeze(1), X, weight.mT)


def _elementwise(layer: nn.Module, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
    return layer(X)  # the task axis changes nothing


def _per_example(layer: nn.Module, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
    """A layer that acts on each example alone: fold the task axis into the examples."""
    out = layer(X.flatten(0, 1))
    return out.unflatten(0, X.shape[:2])


def _flatten(layer: nn.Flatten, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
    return X.flatten(_shift(layer.start_dim), _shift(layer.end_dim))


def _layer_norm(layer: nn.LayerNorm, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
    shape, weight, bias = tuple(layer.normalized_shape), params.get("weight"), params.get("bias")
    if weight is None or weight.dim() == len(shape):
        return nnf.layer_norm(X, shape, weight, bias, layer.eps)
    out = nnf.layer_norm(X, shape, None, None, layer.eps)
    out = out * _per_task(weight, X, len(shape))
    return out if bias is None else out + _per_task(bias, X, len(shape))


def batch_norm_per_task(X: Tensor, eps: float, weight: Tensor | None = None,
                        bias: Tensor | None = None) -> Tensor:
    """Batch normalisation of every task on its own statistics, on a leading task axis.

    Each task's channels are normalised over its examples (and spatial axes), then
    scaled and shifted by ``weight`` and ``bias``: shared, of shape (channels,), or
    one per task, of shape (n_tasks, channels).

    Parameters
    ----------
    X : Tensor of shape (n_tasks, n, channels, ...)
    eps : float
    weight, bias : Tensor or None, default=None

    Returns
    -------
    out : Tensor of the shape of ``X``

    Examples
    --------
    >>> import torch
    >>> from skmeta.functional import batch_norm_per_task
    >>> X = torch.randn(3, 8, 4)
    >>> out = batch_norm_per_task(X, 1e-5, torch.ones(3, 4), torch.zeros(3, 4))
    >>> bool(out.mean(1).abs().max() < 1e-5)
    True
    """
    dims = [1] + list(range(3, X.dim()))  # the examples and spatial axes of each task
    mean = X.mean(dim=dims, keepdim=True)
    var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)
    out = (X - mean) * torch.rsqrt(var + eps)
    if weight is None:
        return out
    lead = X.shape[0] if weight.dim() == 2 else 1
    shape = [lead, 1, -1] + [1] * (X.dim() - 3)
    return out * weight.reshape(shape) + bias.reshape(shape)


def _batch_norm(layer: nn.Module, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
    return batch_norm_per_task(X, layer.eps, params.get("weight"), params.get("bias"))


def _batch_norm_supports(layer: nn.Module) -> str:
    if layer.track_running_stats:
        return ("it tracks running statistics (updated in place); use "
                "track_running_stats=False or skmeta.modules.BatchNorm")
    return ""


def _conv(layer: nn.Module, params: Mapping[str, Tensor], X: Tensor) -> Tensor:
    weight, bias = params["weight"], params.get("bias")
    k = weight.dim() - 2 if weight.dim() == X.dim() - 1 else weight.dim() - 3
    conv = (nnf.conv1d, nnf.conv2d, nnf.conv3d)[k - 1]
    opts = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    if weight.dim() == k + 2:  # shared by every task
        out = conv(X.flatten(0, 1), weight, bias, groups=layer.groups, **opts)
        return out.unflatten(0, X.shape[:2])
    n_tasks, n = X.shape[:2]
    # every task's channels side by side, one group of convolutions per task
    Xg = X.transpose(0, 1).reshape(n, -1, *X.shape[3:])
    out = conv(Xg, weight.flatten(0, 1), None if bias is None else bias.flatten(),
               groups=n_tasks * layer.groups, **opts)
    return out.reshape(n, n_tasks, -1, *out.shape[2:]).transpose(0, 1)


def _conv_supports(layer: nn.Module) -> str:
    if layer.padding_mode != "zeros":
        return f"padding_mode={layer.padding_mode!r} (only 'zeros' is batched)"
    if isinstance(layer.padding, str):
        return f"padding={layer.padding!r} (give the padding as numbers)"
    return ""


def _pool_supports(layer: nn.Module) -> str:
    return "return_indices=True" if getattr(layer, "return_indices", False) else ""


register_batched_layer(nn.Linear, _linear)
for _kind in (nn.ReLU, nn.ReLU6, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SELU, nn.CELU,
              nn.LeakyReLU, nn.SiLU, nn.Mish, nn.Softplus, nn.Softsign, nn.Hardtanh,
              nn.Hardswish, nn.Hardsigmoid, nn.Tanhshrink, nn.Identity, nn.Dropout,
              nn.AlphaDropout):
    register_batched_layer(_kind, _elementwise)
for _kind in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
              nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
              nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d):
    register_batched_layer(_kind, _per_example, supports=_pool_supports)
register_batched_layer(nn.Flatten, _flatten)
register_batched_layer(nn.LayerNorm, _layer_norm)
for _kind in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
    register_batched_layer(_kind, _batch_norm, supports=_batch_norm_supports)
for _kind in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_batched_layer(_kind, _conv, supports=_conv_supports)


# ------------------------------------------------------ operations in a forward


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _align(a: Any, b: Any) -> tuple[Any, Any]:
    """Two operands with task axes, so that they broadcast as one task's tensors would."""
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dim() != b.dim():
        if a.dim() < b.dim():
            a = a.reshape(a.shape[0], *([1] * (b.dim() - a.dim())), *a.shape[1:])
        else:
            b = b.reshape(b.shape[0], *([1] * (a.dim() - b.dim())), *b.shape[1:])
    return a, b


def _binary(op: Callable) -> Callable:
    def run(args: tuple, kwargs: dict) -> Any:
        a, b = _align(args[0], args[1])
        return op(a, b, *args[2:], **kwargs)
    return run


def _same(op: Callable) -> Callable:
    def run(args: tuple, kwargs: dict) -> Any:
        return op(*args, **kwargs)
    return run


def _with_dim(op: Callable, position: int, default: int | None = 0) -> Callable:
    """``op`` whose ``dim`` argument (at ``position``, or by keyword) counts one task's axes."""
    def run(args: tuple, kwargs: dict) -> Any:
        args, kwargs = list(args), dict(kwargs)
        if len(args) > position:
            args[position] = _shift(args[position])
        elif "dim" in kwargs:
            kwargs["dim"] = _shift(kwargs["dim"])
        elif default is not None:
            kwargs["dim"] = _shift(default)
        else:
            raise NotBatchable(f"{getattr(op, '__name__', op)} without a dim")
        return op(*args, **kwargs)
    return run


def _flatten_op(args: tuple, kwargs: dict) -> Tensor:
    start = _arg(args, kwargs, 1, "start_dim", 0)
    end = _arg(args, kwargs, 2, "end_dim", -1)
    return torch.flatten(args[0], _shift(start), _shift(end))


def _shape_args(args: tuple) -> tuple:
    shape = args[1] if len(args) == 2 and isinstance(args[1], Sequence) else args[1:]
    return tuple(shape)


def _reshape(args: tuple, kwargs: dict) -> Tensor:
    X = args[0]
    shape = _shape_args(args) if len(args) > 1 else tuple(kwargs.get("shape", ()))
    return X.reshape(X.shape[0], *shape)


def _size(args: tuple, kwargs: dict) -> Any:
    X, dim = args[0], _arg(args, kwargs, 1, "dim", None)
    return X.shape[1:] if dim is None else X.size(_shift(dim))


def _reduce(name: str) -> Callable:
    def run(args: tuple, kwargs: dict) -> Tensor:
        X = args[0]
        dim = _arg(args, kwargs, 1, "dim", None)
        keepdim = _arg(args, kwargs, 2, "keepdim", False)
        if dim is None:
            dims = tuple(range(1, X.dim()))
        elif isinstance(dim, int):
            dims = (_shift(dim),)
        else:
            dims = tuple(_shift(d) for d in dim)
        return getattr(X, name)(dim=dims, keepdim=keepdim)
    return run


def _transpose(args: tuple, kwargs: dict) -> Tensor:
    return args[0].transpose(_shift(args[1]), _shift(args[2]))


def _permute(args: tuple, kwargs: dict) -> Tensor:
    dims = _shape_args(args)
    return args[0].permute(0, *(_shift(d) for d in dims))


def _getitem(args: tuple, kwargs: dict) -> Any:
    base, index = args
    if not isinstance(base, Tensor):
        return base[index]
    index = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, Tensor) for i in index):
        raise NotBatchable("forward indexes a tensor with a tensor")
    return base[(slice(None), *index)]


def _getattr(args: tuple, kwargs: dict) -> Any:
    base, name = args
    if isinstance(base, Tensor) and name == "shape":
        return base.shape[1:]
    if isinstance(base, Tensor) and name == "ndim":
        return base.dim() - 1
    if isinstance(base, Tensor) and name in ("dtype", "device", "is_cuda"):
        return getattr(base, name)
    raise NotBatchable(f"reads the attribute {name!r} of a tensor")


def _cat(op: Callable) -> Callable:
    def run(args: tuple, kwargs: dict) -> Tensor:
        tensors = list(args[0])
        dim = _shift(_arg(args, kwargs, 1, "dim", 0))
        return op(tensors, dim=dim)
    return run


_UNARY = (torch.relu, torch.tanh, torch.sigmoid, torch.exp, torch.log, torch.sin, torch.cos,
          torch.abs, torch.sqrt, torch.square, torch.neg, torch.clamp, torch.clip,
          operator.neg, nnf.relu, nnf.relu6, nnf.gelu, nnf.silu, nnf.elu, nnf.selu,
          nnf.leaky_relu, nnf.softplus, nnf.sigmoid, nnf.tanh, nnf.dropout, nnf.hardtanh,
          nnf.mish, nnf.hardswish)
_BINARY = (operator.add, operator.sub, operator.mul, operator.truediv, operator.pow,
           torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum)

_FUNCTIONS: dict[Any, Callable] = {
    **{f: _same(f) for f in _UNARY},
    **{f: _binary(f) for f in _BINARY},
    torch.cat: _cat(torch.cat), torch.concat: _cat(torch.cat), torch.stack: _cat(torch.stack),
    torch.flatten: _flatten_op, torch.reshape: _reshape,
    torch.softmax: _with_dim(torch.softmax, 1, None),
    nnf.softmax: _with_dim(nnf.softmax, 1, None),
    nnf.log_softmax: _with_dim(nnf.log_softmax, 1, None),
    torch.unsqueeze: _with_dim(torch.unsqueeze, 1, None),
    operator.getitem: _getitem, builtins.getattr: _getattr,
}


def _method(name: str) -> Callable:
    def run(args: tuple, kwargs: dict) -> Any:
        return getattr(args[0], name)(*args[1:], **kwargs)
    return run


def _binary_method(name: str) -> Callable:
    def run(args: tuple, kwargs: dict) -> Any:
        a, b = _align(args[0], args[1])
        return getattr(a, name)(b, *args[2:], **kwargs)
    return run


def _dim_method(name: str) -> Callable:
    def run(args: tuple, kwargs: dict) -> Any:
        return _with_dim(lambda X, *a, **k: getattr(X, name)(*a, **k), 1, None)(args, kwargs)
    return run


_METHODS: dict[str, Callable] = {
    **{m: _method(m) for m in ("relu", "tanh", "sigmoid", "exp", "log", "abs", "neg", "sqrt",
                               "square", "sin", "cos", "clamp", "contiguous", "clone", "float",
                               "double", "half", "to", "type_as")},
    **{m: _binary_method(m) for m in ("add", "sub", "mul", "div", "pow")},
    "flatten": _flatten_op, "view": _reshape, "reshape": _reshape, "size": _size,
    "dim": lambda args, kwargs: args[0].dim() - 1,
    "mean": _reduce("mean"), "sum": _reduce("sum"),
    "transpose": _transpose, "permute": _permute,
    "unsqueeze": _dim_method("unsqueeze"), "squeeze": _dim_method("squeeze"),
    "softmax": _dim_method("softmax"), "log_softmax": _dim_method("log_softmax"),
}


# ------------------------------------------------------------------ programs


class _Tracer(fx.Tracer):
    """Registered layers stay whole (``call_module``); everything else is traced through."""

    def __init__(self, stop_at: str | None):
        super().__init__()
        self.stop_at = stop_at

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if self.stop_at is not None and qualname and self.stop_at.startswith(qualname + "."):
            return False  # the head lies inside: trace into it
        return _entry(m) is not None or super().is_leaf_module(m, qualname)


class _Ref:
    __slots__ = ("i",)

    def __init__(self, i: int):
        self.i = i


def _template(value: Any, index: dict) -> Any:
    if isinstance(value, fx.Node):
        return _Ref(index[value])
    if isinstance(value, (tuple, list)):
        out = [_template(v, index) for v in value]
        return tuple(out) if isinstance(value, tuple) else out
    if isinstance(value, dict):
        return {k: _template(v, index) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(*(_template(v, index) for v in (value.start, value.stop, value.step)))
    return value


def _has_ref(value: Any) -> bool:
    if isinstance(value, _Ref):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_ref(v) for v in value)
    if isinstance(value, dict):
        return any(_has_ref(v) for v in value.values())
    if isinstance(value, slice):
        return any(_has_ref(v) for v in (value.start, value.stop, value.step))
    return False


def _resolve(value: Any, env: list) -> Any:
    if type(value) is _Ref:
        return env[value.i]
    if isinstance(value, (tuple, list)):
        out = [_resolve(v, env) for v in value]
        return tuple(out) if isinstance(value, tuple) else out
    if isinstance(value, dict):
        return {k: _resolve(v, env) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(*(_resolve(v, env) for v in (value.start, value.stop, value.step)))
    return value


def _resolver(args: tuple, kwargs: dict) -> Callable[[list], tuple[tuple, dict]]:
    """A fast function of the values so far to the node's arguments."""
    if not kwargs and all(type(a) is _Ref for a in args):
        idx = tuple(a.i for a in args)
        return lambda env: (tuple(env[i] for i in idx), {})
    deep = [_has_ref(a) for a in args]
    deep_kwargs = _has_ref(kwargs)

    def resolve(env: list) -> tuple[tuple, dict]:
        out = tuple(_resolve(a, env) if d else a for a, d in zip(args, deep))
        return out, (_resolve(kwargs, env) if deep_kwargs else kwargs)
    return resolve


class _Program:
    """A traced network as a list of batched steps (see :func:`batched_forward`)."""

    def __init__(self, steps: list, n_values: int, output: Any, stop_value: int | None):
        self.steps, self.n_values, self.output, self.stop_value = steps, n_values, output, \
            stop_value

    def __call__(self, params: Mapping[str, Tensor], X: Tensor) -> Any:
        env: list = [None] * self.n_values
        env[0] = X
        for i, run, resolve in self.steps:
            args, kwargs = resolve(env)
            env[i] = run(params, args, kwargs)
            if i == self.stop_value:
                return env[i]
        return _resolve(self.output, env)


def _layer_step(name: str, layer: nn.Module, entry: _Entry) -> Callable:
    prefix = name + "." if name else ""
    names = [(local, prefix + local) for local, _ in layer.named_parameters()]
    fn = entry.fn

    def run(params: Mapping[str, Tensor], args: tuple, kwargs: dict) -> Any:
        own = {local: params[full] for local, full in names if full in params}
        return fn(layer, own, *args, **kwargs)
    return run


def _op_step(op: Callable) -> Callable:
    def run(params: Mapping[str, Tensor], args: tuple, kwargs: dict) -> Any:
        return op(args, kwargs)
    return run


def _compile(module: nn.Module, stop_at: str | None) -> _Program:
    entry = _entry(module)
    if entry is not None and stop_at is None:  # the network is one registered layer
        if entry.supports is not None and (why := entry.supports(module)):
            raise NotBatchable(f"the network ({type(module).__name__}): {why}")
        step = (1, _layer_step("", module, entry), lambda env: ((env[0],), {}))
        return _Program([step], 2, _Ref(1), None)
    if entry is None and fx.Tracer().is_leaf_module(module, ""):  # one torch.nn layer
        raise NotBatchable(f"the network ({type(module).__name__}) has no batched "
                           "implementation (see skmeta.functional.register_batched_layer)")
    try:
        graph = _Tracer(stop_at).trace(module)
    except Exception as e:  # noqa: BLE001 - any failure to trace means "not batchable"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise NotBatchable(f"{type(module).__name__} cannot be traced with torch.fx "
                           f"({type(e).__name__}: {first[:160]})") from None
    nodes = list(graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if not placeholders:
        raise NotBatchable(f"{type(module).__name__}.forward takes no input")
    # the input first (env[0]); further inputs must have defaults
    order = [placeholders[0]] + [n for n in nodes if n is not placeholders[0]]
    index = {node: i for i, node in enumerate(n for n in order if n.op != "output")}
    steps: list = []
    output: Any = None
    stop_value = None
    for node in order[1:]:
        if node.op == "placeholder":
            if not node.args:
                raise NotBatchable(f"{type(module).__name__}.forward takes more than one input")
            default = node.args[0]
            steps.append((index[node], _op_step(lambda a, k, d=default: d),
                          lambda env: ((), {})))
            continue
        if node.op == "output":
            output = _template(node.args[0], index)
            continue
        args, kwargs = _template(node.args, index), _template(node.kwargs, index)
        if node.op == "call_module":
            layer = module.get_submodule(node.target)
            entry = _entry(layer)
            if entry is None:
                raise NotBatchable(f"layer {node.target!r} ({type(layer).__name__}) has no "
                                   "batched implementation (see "
                                   "skmeta.functional.register_batched_layer)")
            if entry.supports is not None and (why := entry.supports(layer)):
                raise NotBatchable(f"layer {node.target!r} ({type(layer).__name__}): {why}")
            if node.target == stop_at:  # the head's input is what was asked for
                first = args[0]
                if type(first) is not _Ref:
                    raise NotBatchable(f"the head {stop_at!r} has no tensor input")
                stop_value = first.i
                steps.append((first.i, _op_step(lambda a, k: a[0]),
                              _resolver((first,), {})))
                break
            run = _layer_step(node.target, layer, entry)
        elif node.op == "call_function":
            op = _FUNCTIONS.get(node.target)
            if op is None:
                raise NotBatchable(f"forward calls {_name(node.target)}, which the batched "
                                   "engine does not run")
            run = _op_step(op)
        elif node.op == "call_method":
            op = _METHODS.get(node.target)
            if op is None:
                raise NotBatchable(f"forward calls the tensor method .{node.target}(), which "
                                   "the batched engine does not run")
            run = _op_step(op)
        else:  # get_attr
            raise NotBatchable(f"forward reads the tensor {node.target!r} directly; only "
                               "registered layers may hold the tensors it uses")
        steps.append((index[node], run, _resolver(args, kwargs)))
    if stop_at is not None and stop_value is None:
        raise ValueError(f"The network never reached {stop_at!r}.")
    return _Program(steps, len(index), output, stop_value)


def _name(target: Any) -> str:
    module = getattr(target, "__module__", None) or ""
    return f"{module}.{getattr(target, '__name__', repr(target))}".lstrip(".")


def _program(module: nn.Module, stop_at: str | None) -> _Program:
    cache = _PROGRAMS.get(module)
    if cache is None:
        cache = _PROGRAMS[module] = {}
    key = (stop_at, module.training)
    program = cache.get(key)
    if program is None:
        try:
            program = _compile(module, stop_at)
        except NotBatchable as e:
            program = e
        cache[key] = program
    if isinstance(program, NotBatchable):
        raise program
    return program


def batchable(module: nn.Module) -> tuple[bool, str]:
    """Whether the batched engine runs ``module``, and why not.

    It runs any network that :mod:`torch.fx` can trace whose layers have a batched
    implementation (:func:`register_batched_layer`: linear and convolution layers,
    element-wise activations, dropout, pooling, flatten, :class:`torch.nn.LayerNorm`,
    batch norms with batch statistics, :class:`skmeta.modules.BatchNorm`, ...) and
    whose ``forward`` uses only tensor operations it knows (residual additions,
    concatenation, activations, flatten, view and reshape, ...), with no hooks.

    Parameters
    ----------
    module : nn.Module
        The network.

    Returns
    -------
    ok : bool
    reason : str
        Why not, in one line; empty when ``ok``.

    Examples
    --------
    >>> from torch import nn
    >>> from skmeta.functional import batchable
    >>> batchable(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
    (True, '')
    >>> batchable(nn.Sequential(nn.Linear(2, 4), nn.LSTM(4, 1)))
    (False, "layer '1' (LSTM) has no batched implementation (see skmeta.functional.register_batched_layer)")
    """  # noqa: E501
    for name, sub in module.named_modules():
        if sub._forward_hooks or sub._forward_pre_hooks:
            return False, f"layer {name!r} has hooks"
    try:
        _program(module, None)
    except NotBatchable as e:
        return False, str(e)
    return True, ""


def batched_forward(module: nn.Module, params: Mapping[str, Tensor], X: Tensor, *,
                    stop_at: str | None = None) -> Tensor:
    """Run ``module`` on every task at once: ``X`` and (some of) ``params`` carry a task axis.

    Parameters
    ----------
    module : nn.Module
        A network for which :func:`batchable` holds; used as a structure only (its
        trace is cached).
    params : mapping of str to Tensor
        Its parameters: with a leading task axis (one set per task) or without
        (shared by every task).
    X : Tensor of shape (n_tasks, n, \\*input_shape)
        Every task's inputs.
    stop_at : str or None, default=None
        Return the input of this submodule instead of the output.

    Returns
    -------
    out : Tensor of shape (n_tasks, n, ...)

    Raises
    ------
    NotBatchable
        If the batched engine cannot run ``module`` (a ``ValueError``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skmeta.functional import batched_forward
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> params = {k: p.expand(4, *p.shape) for k, p in net.named_parameters()}
    >>> X = torch.randn(4, 5, 2)
    >>> torch.allclose(batched_forward(net, params, X), net(X))
    True
    """
    return _program(module, stop_at)(params, X)
