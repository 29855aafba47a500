"""The worked example of the "Extending" guide is a real algorithm that passes the contract."""

import doctest
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skmeta.data import as_tasks
from skmeta.datasets import make_sinusoid_tasks
from skmeta.utils.estimator_checks import check_estimator

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "user_guide" / "code" / "layerwise_maml.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("layerwise_maml", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["layerwise_maml"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("layerwise_maml", None)


def test_the_example_passes_the_contract(example):
    check_estimator(example.LayerwiseMAMLRegressor())
    check_estimator(example.LayerwiseMAMLClassifier())


def test_the_example_doctests_pass(example):
    failures, tried = doctest.testmod(example, optionflags=doctest.ELLIPSIS)
    assert tried >= 3 and failures == 0


def test_the_example_learns_one_rate_per_layer_and_its_engines_agree(example):
    tasks = make_sinusoid_tasks(n_tasks=40, random_state=0)
    est = example.LayerwiseMAMLRegressor(k_shot=10, inner_lr=0.05, max_epochs=3, lr=1e-2,
                                         verbose=0, random_state=0).fit(tasks)
    rates = est.inner_state_.tensors()
    assert all(r.shape == () for r in rates.values()) and len(rates) == 6
    assert len({round(float(r.detach()), 6) for r in rates.values()}) > 1  # learned apart
    batch = est.get_meta_batch(as_tasks(tasks, classification=False), np.arange(8),
                               np.random.default_rng(0), training=True)
    reference = est.get_meta_gradient(batch, "loop")[1]
    for engine in ("vmap", "batched"):
        grads = est.get_meta_gradient(batch, engine)[1]
        for k, g in reference.items():
            torch.testing.assert_close(grads[k], g, rtol=1e-4, atol=1e-6)


def test_parameter_constraints_have_a_public_import():
    """The guide imports Interval/StrOptions from skmeta, never from sklearn's private module."""
    from pathlib import Path

    from sklearn.utils._param_validation import Interval as SkInterval

    from skmeta.utils import validation

    assert validation.Interval is SkInterval
    assert {"Interval", "StrOptions"} <= set(validation.__all__)
    guide = (Path(__file__).resolve().parents[1] / "docs" / "user_guide" / "extending.rst"
             ).read_text()
    assert "from skmeta.utils.validation import Interval, StrOptions" in guide
    assert "import" not in "".join(line for line in guide.splitlines()
                                   if "_param_validation" in line)
