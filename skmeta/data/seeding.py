"""One integer seed from any ``random_state``, for the seeded streams of fitting."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["seed_from"]


def seed_from(random_state: Any) -> int:
    """An int seed from ``None``, an int, a ``RandomState`` or a ``Generator``.

    Examples
    --------
    >>> from skmeta.data.seeding import seed_from
    >>> seed_from(3)
    3
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int, a numpy RandomState or Generator; "
                     f"got {random_state!r}.")
