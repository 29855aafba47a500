"""Mistakes a new user makes get an error that names the parameter and the fix."""

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from skmeta import MAMLClassifier, MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

FAST = dict(max_epochs=1, verbose=0, random_state=0)


@pytest.mark.parametrize("name, value, fix", [
    ("module", "MLP", "from skmeta.modules import MLP' and module=MLP"),
    ("criterion", "mse", "from torch.nn import MSELoss' and criterion=MSELoss"),
    ("optimizer", "adam", "from torch.optim import Adam' and optimizer=Adam"),
])
def test_a_class_given_by_name_is_refused_clearly(name, value, fix):
    tasks = make_sinusoid_tasks(n_tasks=4, random_state=0)
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of MAMLRegressor "
                                                    f"must be a class .*not the string "
                                                    f"'{value}'") as info:
        MAMLRegressor(**{name: value}, **FAST).fit(tasks)
    assert fix in str(info.value)


def test_none_arrays_are_named():
    tasks = make_sinusoid_tasks(n_tasks=4, random_state=0)
    maml = MAMLRegressor(k_shot=5, **FAST).fit(tasks)
    X, y = tasks[0]
    with pytest.raises(TypeError, match=r"X_support.*: X is None; pass an array-like of shape"):
        maml.adapt(None, y)
    with pytest.raises(TypeError, match="y is None; pass the targets"):
        maml.adapt(X, None)
    with pytest.raises(TypeError, match="X is None"):
        maml.adapt(X, y).predict(None)
    rng = np.random.default_rng(0)
    pool_y = np.repeat(np.arange(4), 6)
    clf = MAMLClassifier(n_way=2, k_shot=2, n_query=2, n_episodes=4, **FAST).fit(
        rng.normal(size=(24, 2)), pool_y)
    with pytest.raises(TypeError, match="X is None"):
        clf.adapt(None, pool_y[:4])
