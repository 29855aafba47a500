"""Few-shot episodes drawn from a labelled pool."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .checks import check_task_arrays, continuous_targets
from .seeding import seed_from
from .task import Task, _CheckedTask

__all__ = ["EpisodeSampler"]


class EpisodeSampler(Sequence):
    """A lazy, seeded sequence of few-shot episodes drawn from a labelled pool.

    Episode ``i`` picks ``n_way`` classes, then ``k_shot`` support and ``n_query``
    query examples of each, without replacement. It is computed when read, from
    ``(random_state, i)`` alone, so the same index always gives the same episode
    and nothing is materialised. Episodes keep the pool's original labels.

    Parameters
    ----------
    X : array-like of shape (n_samples, \\*input_shape)
    y : array-like of shape (n_samples,)
        Class label of each example.
    n_way : int, default=5
        Classes per episode.
    k_shot : int, default=1
        Support examples per class.
    n_query : int, default=15
        Query examples per class.
    n_episodes : int, default=1000
        Length of the sequence.
    groups : array-like of shape (n_samples,), default=None
        A group per example (e.g. Omniglot alphabets), used with ``within_groups``.
    within_groups : bool, default=False
        Draw all classes of an episode from one group (Lake et al.'s harder
        within-alphabet protocol); needs ``groups``.
    random_state : int, RandomState instance or None, default=None
        Seed of the episodes. ``None`` draws one seed at construction.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.data import EpisodeSampler
    >>> X, y = np.random.default_rng(0).normal(size=(100, 3)), np.repeat(np.arange(10), 10)
    >>> episodes = EpisodeSampler(X, y, n_way=3, k_shot=2, n_query=4, n_episodes=50,
    ...                           random_state=0)
    >>> len(episodes), episodes[0].X_support.shape, episodes[0].X_query.shape
    (50, (6, 3), (12, 3))
    >>> np.array_equal(episodes[7].y_query, episodes[7].y_query)
    True
    """

    def __init__(self, X: Any, y: Any, *, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                 n_episodes: int = 1000, groups: Any = None, within_groups: bool = False,
                 random_state: Any = None):
        for name, value, low in (("n_way", n_way, 1), ("k_shot", k_shot, 1),
                                 ("n_query", n_query, 0), ("n_episodes", n_episodes, 1)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"The '{name}' parameter of EpisodeSampler must be an int >= "
                                 f"{low}. Got {value!r} instead.")
        self.X, self.y = check_task_arrays(X, y, where="the pool", classification=True)
        continuous = continuous_targets(self.y, "the pool")
        if continuous:
            raise ValueError(continuous)
        self.n_way, self.k_shot, self.n_query = int(n_way), int(k_shot), int(n_query)
        self.n_episodes = int(n_episodes)
        self.within_groups = bool(within_groups)
        self.seed = seed_from(random_state)
        classes, y_idx, counts = np.unique(self.y, return_inverse=True, return_counts=True)
        self.classes_ = classes
        eligible = np.flatnonzero(counts >= self.k_shot + self.n_query)
        self._members = {c: np.flatnonzero(y_idx == c) for c in eligible}
        if within_groups:
            if groups is None:
                raise ValueError("within_groups=True needs groups (e.g. the alphabet of each "
                                 "example).")
            groups = np.asarray(groups)
            if len(groups) != len(self.y):
                raise ValueError("groups must have one entry per example of the pool.")
            first = {c: groups[m[0]] for c, m in self._members.items()}
            by_group: dict[Any, list[int]] = {}
            for c, g in first.items():
                by_group.setdefault(g, []).append(c)
            self._pools = [np.array(cs) for _, cs in sorted(by_group.items(), key=lambda kv:
                                                               str(kv[0]))
                           if len(cs) >= self.n_way]
            if not self._pools:
                raise ValueError(f"No group has n_way={self.n_way} classes with at least "
                                 f"k_shot + n_query = {self.k_shot + self.n_query} examples.")
        else:
            if len(eligible) < self.n_way:
                raise ValueError(f"The pool has {len(eligible)} classes with at least k_shot + "
                                 f"n_query = {self.k_shot + self.n_query} examples; n_way="
                                 f"{self.n_way} needs {self.n_way}.")
            self._pools = [eligible]
        small = np.flatnonzero(counts < self.k_shot + self.n_query)
        if len(small):  # after the errors: a pool that cannot be used is refused instead
            named = ", ".join(f"{label!r} ({n})" for label, n in
                              zip(classes[small[:10]].tolist(), counts[small[:10]].tolist()))
            more = f" and {len(small) - 10} more" if len(small) > 10 else ""
            one = len(small) == 1
            warnings.warn(f"{len(small)} class{'' if one else 'es'} of the pool "
                          f"ha{'s' if one else 've'} fewer than k_shot + n_query = "
                          f"{self.k_shot + self.n_query} examples and "
                          f"{'is' if one else 'are'} left out of every episode: {named}{more} "
                          "(examples in parentheses). Lower k_shot or n_query to use them, or "
                          "drop them to silence this.", UserWarning, stacklevel=2)

    def __len__(self) -> int:
        return self.n_episodes

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += self.n_episodes
        if not 0 <= i < self.n_episodes:
            raise IndexError(f"episode index {i} out of range for {self.n_episodes} episodes")
        rng = np.random.default_rng([self.seed, i])
        pool = self._pools[rng.integers(len(self._pools))] if len(self._pools) > 1 \
            else self._pools[0]
        chosen = rng.choice(pool, size=self.n_way, replace=False)
        support, query = [], []
        for c in chosen:
            m = rng.choice(self._members[c], size=self.k_shot + self.n_query, replace=False)
            support.append(m[:self.k_shot])
            query.append(m[self.k_shot:])
        s, q = np.concatenate(support), np.concatenate(query)
        return _CheckedTask(self.X[s], self.y[s], self.X[q], self.y[q])

    def __iter__(self) -> Iterator[Task]:
        for i in range(len(self)):
            yield self[i]
