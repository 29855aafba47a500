"""Networks for meta-learning.

The estimators fill in ``in_features`` (from the data) and ``n_outputs`` (``n_way``
for classifiers, the number of targets for regressors) for any module class whose
constructor has these parameters and leaves them unset, so
``MAMLClassifier(module=ConvNet, n_way=5)`` needs no further sizes.

The normalisation layer here, :class:`BatchNorm`, is written with elementary
tensor operations and always normalises with the statistics of the batch it sees
(as MAML's reference implementation does, "transductive" batch norm). Unlike
PyTorch's native ``BatchNorm``, it gives exact second-order meta-gradients under
:func:`torch.func.vmap`, so it runs on skmeta's vectorised engine.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .functional import batch_norm_per_task, current_step, register_batched_layer

__all__ = ["MLP", "ConvNet", "BatchNorm", "LinearFeatures"]


class BatchNorm(nn.Module):
    """Batch normalisation over the batch and spatial axes, with batch statistics.

    Normalises each channel (axis 1) with the mean and the biased variance of the
    current batch, then applies a per-channel affine map. It keeps no running
    statistics: predictions on a query set use that set's statistics, as in Finn
    et al. (2017). Works for inputs of shape (n, C) and (n, C, \\*spatial).

    Parameters
    ----------
    num_features : int
        Number of channels C.
    eps : float, default=1e-5
        Added to the variance for numerical stability.
    affine : bool, default=True
        Learn a per-channel scale (initialised to 1) and shift (to 0).
    n_steps : int or None, default=None
        Per-step weights (MAML++): a scale and shift for each of ``n_steps`` inner
        steps, chosen by :func:`skmeta.functional.current_step` (the last one
        outside an inner loop). Batch statistics are per step by construction:
        each forward pass normalises with the statistics of the batch it sees.

    Examples
    --------
    >>> import torch
    >>> bn = BatchNorm(3)
    >>> out = bn(torch.randn(8, 3, 4, 4) * 5 + 2)
    >>> round(out.mean().item(), 4), round(out.var(unbiased=False).item(), 2)
    (0.0, 1.0)
    """

    def __init__(self, num_features: int, *, eps: float = 1e-5, affine: bool = True,
                 n_steps: int | None = None):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        self.n_steps = None if n_steps is None else int(n_steps)
        if affine:
            shape = (num_features,) if n_steps is None else (int(n_steps), num_features)
            self.weight = nn.Parameter(torch.ones(shape))
            self.bias = nn.Parameter(torch.zeros(shape))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def per_step(self, n_steps: int) -> None:
        """Give every inner step its own scale and shift (MAML++'s BNWB), from the current ones.

        Parameters
        ----------
        n_steps : int
            The number of inner steps with weights of their own.
        """
        if self.n_steps is not None or not self.affine:
            raise ValueError("per_step needs an affine BatchNorm without per-step weights.")
        with torch.no_grad():
            self.weight = nn.Parameter(self.weight.detach().repeat(int(n_steps), 1))
            self.bias = nn.Parameter(self.bias.detach().repeat(int(n_steps), 1))
        self.n_steps = int(n_steps)

    def forward(self, x: Tensor) -> Tensor:
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
        out = (x - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            weight, bias = self.weight, self.bias
            if self.n_steps is not None:
                step = current_step()
                row = self.n_steps - 1 if step is None else min(step, self.n_steps - 1)
                weight, bias = weight[row], bias[row]
            shape = [1, -1] + [1] * (x.dim() - 2)
            out = out * weight.view(shape) + bias.view(shape)
        return out

    def extra_repr(self) -> str:
        steps = "" if self.n_steps is None else f", n_steps={self.n_steps}"
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}{steps}"


@register_batched_layer(BatchNorm)
def _batched_batch_norm(layer: BatchNorm, params: dict[str, Tensor], X: Tensor) -> Tensor:
    """:class:`BatchNorm` on every task at once (``X``: task axis first; see
    :func:`skmeta.functional.register_batched_layer`)."""
    weight, bias = params.get("weight"), params.get("bias")
    if weight is not None and layer.n_steps is not None:  # this inner step's scale and shift
        step = current_step()
        row = layer.n_steps - 1 if step is None else min(step, layer.n_steps - 1)
        weight, bias = weight[..., row, :], bias[..., row, :]
    return batch_norm_per_task(X, layer.eps, weight, bias)


class MLP(nn.Module):
    """A multi-layer perceptron: Linear, activation, ..., Linear.

    Parameters
    ----------
    in_features : int or None, default=None
        Input size. ``None`` lets the estimator set it from the data.
    n_outputs : int or None, default=None
        Output size. ``None`` lets the estimator set it (``n_way`` for
        classifiers, the number of targets for regressors); 1 when used alone.
    hidden : sequence of int, default=(40, 40)
        Hidden layer sizes; ``(40, 40)`` is Finn et al.'s sinusoid network.
    activation : type of nn.Module, default=nn.ReLU
        The non-linearity between layers.
    dropout : float, default=0.0
        Dropout probability after each hidden activation.

    Examples
    --------
    >>> import torch
    >>> net = MLP(in_features=1, n_outputs=1)
    >>> net
    MLP(
      (layers): Sequential(
        (0): Linear(in_features=1, out_features=40, bias=True)
        (1): ReLU()
        (2): Linear(in_features=40, out_features=40, bias=True)
        (3): ReLU()
        (4): Linear(in_features=40, out_features=1, bias=True)
      )
    )
    >>> net(torch.zeros(5, 1)).shape
    torch.Size([5, 1])
    """

    def __init__(self, in_features: int | None = None, n_outputs: int | None = None, *,
                 hidden: Sequence[int] = (40, 40), activation: type[nn.Module] = nn.ReLU,
                 dropout: float = 0.0):
        super().__init__()
        if in_features is None:
            raise ValueError("MLP needs in_features; the skmeta estimators set it from the "
                             "data, or pass module__in_features=<number of features>.")
        sizes = [int(in_features), *map(int, hidden)]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), activation()]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], 1 if n_outputs is None else int(n_outputs)))
        self.layers = nn.Sequential(*layers)

    def forward(self, X: Tensor) -> Tensor:
        return self.layers(X.flatten(1))  # examples first; a 2-D input is left as it is


class ConvNet(nn.Module):
    """The convolutional network of MAML's few-shot image experiments.

    Four blocks of [3x3 convolution with ``n_filters`` filters, batch norm (batch
    statistics, :class:`BatchNorm`), ReLU, 2x2 max-pooling], then a linear layer to
    ``n_outputs`` (Finn et al., 2017; Vinyals et al., 2016). On 28x28 Omniglot
    images the feature map after four blocks is 1x1.

    Parameters
    ----------
    n_outputs : int or None, default=None
        Number of outputs; ``None`` lets the estimator set it to ``n_way``.
    in_channels : int, default=1
        Input channels (1 for Omniglot).
    n_filters : int, default=64
        Filters per convolution (64 in the paper; fewer is faster on a CPU).
    n_blocks : int, default=4
        Number of convolutional blocks.
    image_size : int, default=28
        Input height and width, used to size the final linear layer.

    Examples
    --------
    >>> import torch
    >>> net = ConvNet(n_outputs=5, n_filters=8)
    >>> net(torch.zeros(3, 1, 28, 28)).shape
    torch.Size([3, 5])
    """

    def __init__(self, n_outputs: int | None = None, *, in_channels: int = 1,
                 n_filters: int = 64, n_blocks: int = 4, image_size: int = 28):
        super().__init__()
        blocks: list[nn.Module] = []
        channels, size = int(in_channels), int(image_size)
        for _ in range(int(n_blocks)):
            blocks += [nn.Conv2d(channels, n_filters, 3, padding=1), BatchNorm(n_filters),
                       nn.ReLU(), nn.MaxPool2d(2)]
            channels, size = n_filters, size // 2
        if size < 1:
            raise ValueError(f"image_size={image_size} is too small for n_blocks={n_blocks} "
                             "2x2 poolings.")
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(channels * size * size, 5 if n_outputs is None else int(n_outputs))

    def forward(self, X: Tensor) -> Tensor:
        return self.head(self.features(X).flatten(1))


class LinearFeatures(nn.Module):
    """A linear model whose features are exactly ``[1, x]``: an intercept and the inputs.

    The network is one ``nn.Linear`` without bias (``head``) applied to the
    inputs with a column of ones before them, so its "features" have no learned
    part. With :class:`~skmeta.ALPaCARegressor` (whose head is that layer) the
    model of a task is ``y = [1, x] @ w + noise`` with ``w`` drawn from a learned
    Gaussian prior: the linear mixed model with a random intercept and random
    slopes, fitted by maximum likelihood across tasks, whose posterior mean for a
    new task is the BLUP.

    Parameters
    ----------
    in_features : int or None, default=None
        The number of inputs ``x``; ``None`` lets the estimator set it.
    n_outputs : int or None, default=None
        The number of targets; ``None`` lets the estimator set it (1 alone).

    Examples
    --------
    >>> import torch
    >>> from skmeta.modules import LinearFeatures
    >>> net = LinearFeatures(in_features=2)
    >>> net.head
    Linear(in_features=3, out_features=1, bias=False)
    >>> with torch.no_grad():
    ...     _ = net.head.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    >>> net(torch.tensor([[1.0, 1.0]]))  # 1 + 2 * 1 + 3 * 1
    tensor([[6.]], grad_fn=<MmBackward0>)
    """

    def __init__(self, in_features: int | None = None, n_outputs: int | None = None):
        super().__init__()
        if in_features is None:
            raise ValueError("LinearFeatures needs in_features; the skmeta estimators set it "
                             "from the data, or pass module__in_features=<number of inputs>.")
        self.head = nn.Linear(int(in_features) + 1, 1 if n_outputs is None else int(n_outputs),
                              bias=False)

    def forward(self, X: Tensor) -> Tensor:
        X = X.flatten(1) if X.dim() > 2 else X
        return self.head(torch.cat([X.new_ones(*X.shape[:-1], 1), X], -1))
