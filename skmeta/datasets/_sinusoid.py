"""The sinusoid regression tasks of Finn et al. (2017)."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state


def make_sinusoid_tasks(n_tasks: int = 1000, n_samples: int = 20, *,
                        amplitude_range: tuple[float, float] = (0.1, 5.0),
                        phase_range: tuple[float, float] = (0.0, np.pi),
                        x_range: tuple[float, float] = (-5.0, 5.0), noise: float = 0.0,
                        return_params: bool = False, random_state=None):
    """Make sinusoid regression tasks ``y = A sin(x - phi)``.

    Each task draws an amplitude ``A`` and a phase ``phi`` uniformly from their
    ranges and ``n_samples`` inputs ``x`` uniformly from ``x_range``, as in the
    regression experiments of Finn et al. (2017), section 5.1.

    Parameters
    ----------
    n_tasks : int, default=1000
        Number of tasks.
    n_samples : int, default=20
        Examples per task (e.g. 10 support + 10 query).
    amplitude_range : (float, float), default=(0.1, 5.0)
    phase_range : (float, float), default=(0, pi)
    x_range : (float, float), default=(-5, 5)
    noise : float, default=0.0
        Standard deviation of Gaussian noise added to ``y``.
    return_params : bool, default=False
        Also return the ``(amplitude, phase)`` of every task.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    tasks : list of (X, y)
        ``X`` has shape (n_samples, 1), ``y`` shape (n_samples,), float32.
    params : ndarray of shape (n_tasks, 2)
        Only with ``return_params=True``.

    Examples
    --------
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=3, n_samples=10, random_state=0)
    >>> len(tasks), tasks[0][0].shape, tasks[0][1].shape
    (3, (10, 1), (10,))
    """
    for name, value in (("n_tasks", n_tasks), ("n_samples", n_samples)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"The '{name}' parameter of make_sinusoid_tasks must be an int >= 1. "
                             f"Got {value!r} instead.")
    if noise < 0:
        raise ValueError(f"The 'noise' parameter must be >= 0. Got {noise!r} instead.")
    rng = check_random_state(random_state)
    amp = rng.uniform(*amplitude_range, size=n_tasks)
    phase = rng.uniform(*phase_range, size=n_tasks)
    X = rng.uniform(*x_range, size=(n_tasks, n_samples, 1))
    y = amp[:, None] * np.sin(X[..., 0] - phase[:, None])
    if noise:
        y = y + rng.normal(scale=noise, size=y.shape)
    X, y = X.astype(np.float32), y.astype(np.float32)
    tasks = [(X[t], y[t]) for t in range(n_tasks)]
    if return_params:
        return tasks, np.stack([amp, phase], axis=1)
    return tasks
