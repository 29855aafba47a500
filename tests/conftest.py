import os

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def sinusoid_tasks():
    from skmeta.datasets import make_sinusoid_tasks

    return make_sinusoid_tasks(n_tasks=60, n_samples=20, random_state=0)


@pytest.fixture
def pool():
    """A labelled pool of 20 classes, 12 examples each, 4 features."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(20), 12)
    centers = rng.normal(scale=3.0, size=(20, 4))
    X = (centers[y] + rng.normal(size=(len(y), 4))).astype(np.float32)
    return X, y


@pytest.fixture
def omniglot_home():
    home = os.environ.get("SKMETA_DATA")
    if not home or not os.path.exists(os.path.join(home, "omniglot")):
        pytest.skip("Omniglot data not found: set SKMETA_DATA to the folder holding omniglot/")
    return home
