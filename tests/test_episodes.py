"""Few-shot episodes drawn from a labelled pool: skmeta.EpisodeSampler."""

import time

import numpy as np
import pytest

from skmeta import EpisodeSampler

# ---------------------------------------------------------------------------
# EpisodeSampler


def _pool(n_classes=10, per_class=8, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    X = rng.normal(size=(len(y), n_features)) + y[:, None]
    return X, y


def _rows(X_part, X_pool):
    """Row indices of X_part in X_pool (rows of the pool are unique)."""
    return [int(np.flatnonzero((X_pool == row).all(axis=1))[0]) for row in X_part]


def test_sampler_length_and_shapes():
    X, y = _pool()
    episodes = EpisodeSampler(X, y, n_way=4, k_shot=2, n_query=3, n_episodes=17,
                              random_state=0)
    assert len(episodes) == 17
    task = episodes[5]
    assert task.X_support.shape == (8, 3)
    assert task.y_support.shape == (8,)
    assert task.X_query.shape == (12, 3)
    assert task.y_query.shape == (12,)
    assert len(list(episodes)) == 17


def test_sampler_classes_shots_and_disjoint_sets():
    X, y = _pool(n_classes=12, per_class=10)
    episodes = EpisodeSampler(X, y, n_way=5, k_shot=3, n_query=4, n_episodes=30,
                              random_state=1)
    for task in episodes:
        classes, s_counts = np.unique(task.y_support, return_counts=True)
        assert len(classes) == 5
        assert (s_counts == 3).all()
        q_classes, q_counts = np.unique(task.y_query, return_counts=True)
        np.testing.assert_array_equal(q_classes, classes)
        assert (q_counts == 4).all()
        support_rows = _rows(task.X_support, X)
        query_rows = _rows(task.X_query, X)
        assert not set(support_rows) & set(query_rows)
        assert len(set(support_rows)) == len(support_rows)
        assert len(set(query_rows)) == len(query_rows)
        # original labels are kept: every example carries its pool label
        np.testing.assert_array_equal(y[support_rows], task.y_support)
        np.testing.assert_array_equal(y[query_rows], task.y_query)


def test_sampler_deterministic_by_seed_and_index():
    X, y = _pool()
    a = EpisodeSampler(X, y, n_way=3, k_shot=1, n_query=2, n_episodes=50, random_state=7)
    b = EpisodeSampler(X, y, n_way=3, k_shot=1, n_query=2, n_episodes=50, random_state=7)
    for i in (0, 3, 49):
        for u, v in zip(a[i], b[i]):
            np.testing.assert_array_equal(u, v)
    # reading the same index twice, or after other indices, gives the same episode
    first = a[3]
    a[10], a[20]
    for u, v in zip(first, a[3]):
        np.testing.assert_array_equal(u, v)


def test_sampler_different_indices_and_seeds_differ():
    X, y = _pool(n_classes=20)
    episodes = EpisodeSampler(X, y, n_way=5, k_shot=1, n_query=3, n_episodes=20,
                              random_state=0)
    keys = {tuple(_rows(t.X_support, X)) for t in episodes}
    assert len(keys) > 15
    other = EpisodeSampler(X, y, n_way=5, k_shot=1, n_query=3, n_episodes=20, random_state=1)
    assert any(not np.array_equal(episodes[i].X_support, other[i].X_support)
               for i in range(5))


def test_sampler_is_lazy():
    X, y = _pool()
    t0 = time.perf_counter()
    episodes = EpisodeSampler(X, y, n_way=3, k_shot=1, n_query=2, n_episodes=10**9,
                              random_state=0)
    assert len(episodes) == 10**9
    last = episodes[10**9 - 1]
    assert last.X_support.shape == (3, 3)
    assert time.perf_counter() - t0 < 2.0


def test_sampler_negative_index_and_index_error():
    X, y = _pool()
    episodes = EpisodeSampler(X, y, n_way=3, k_shot=1, n_query=2, n_episodes=10,
                              random_state=0)
    for u, v in zip(episodes[-1], episodes[9]):
        np.testing.assert_array_equal(u, v)
    for u, v in zip(episodes[-10], episodes[0]):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(IndexError):
        episodes[10]
    with pytest.raises(IndexError):
        episodes[-11]
    assert len(episodes[2:5]) == 3


def test_sampler_within_groups():
    rng = np.random.default_rng(0)
    n_classes, per_class = 12, 5
    y = np.repeat(np.arange(n_classes), per_class)
    group_of_class = np.array(["a"] * 4 + ["b"] * 5 + ["c"] * 3)  # "c" is too small
    groups = group_of_class[y]
    X = rng.normal(size=(len(y), 2))
    episodes = EpisodeSampler(X, y, n_way=4, k_shot=1, n_query=2, n_episodes=60,
                              groups=groups, within_groups=True, random_state=0)
    seen = set()
    for task in episodes:
        task_groups = set(group_of_class[np.unique(task.y_support)])
        assert len(task_groups) == 1
        seen |= task_groups
    assert seen == {"a", "b"}


@pytest.mark.parametrize("kwargs, match", [
    ({"n_way": 0}, "n_way"),
    ({"n_way": 2.5}, "n_way"),
    ({"k_shot": 0}, "k_shot"),
    ({"n_query": -1}, "n_query"),
    ({"n_episodes": 0}, "n_episodes"),
    ({"n_way": True}, "n_way"),
    ({"random_state": "seed"}, "random_state"),
])
def test_sampler_bad_arguments(kwargs, match):
    X, y = _pool()
    with pytest.raises(ValueError, match=match):
        EpisodeSampler(X, y, **kwargs)


def test_sampler_too_small_pools():
    X, y = _pool(n_classes=4, per_class=5)
    with pytest.raises(ValueError, match="n_way=5"):
        EpisodeSampler(X, y, n_way=5, k_shot=1, n_query=1)
    with pytest.raises(ValueError, match="k_shot \\+ n_query"):
        EpisodeSampler(X, y, n_way=2, k_shot=3, n_query=3)  # 6 > 5 examples per class
    groups = np.where(y < 2, "a", "b")
    with pytest.raises(ValueError, match="No group"):
        EpisodeSampler(X, y, n_way=3, k_shot=1, n_query=1, groups=groups, within_groups=True)
    with pytest.raises(ValueError, match="within_groups=True needs groups"):
        EpisodeSampler(X, y, n_way=2, within_groups=True)
    with pytest.raises(ValueError, match="one entry per example"):
        EpisodeSampler(X, y, n_way=2, k_shot=1, n_query=1, groups=groups[:-1],
                       within_groups=True)
    with pytest.raises(ValueError, match="different numbers of samples"):
        EpisodeSampler(X, y[:-1], n_way=2)


def test_sampler_skips_classes_with_too_few_examples():
    X, y = _pool(n_classes=6, per_class=6)
    keep = ~((y == 0) & (np.arange(len(y)) % 6 >= 2))  # class 0 keeps 2 examples
    with pytest.warns(UserWarning, match=r"1 class of the pool has fewer .* 0 \(2\)"):
        episodes = EpisodeSampler(X[keep], y[keep], n_way=5, k_shot=1, n_query=3,
                                  n_episodes=40, random_state=0)
    assert all(0 not in t.y_support for t in episodes)


# ---------------------------------------------------------------------------
# modules
