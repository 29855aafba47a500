"""The previous release's numbers and files: meta-gradients, model files and predictions.

``tests/data/reference/`` was written by ``tests/_reference.py`` with the release of
2026-12-01, before the package was reorganised; nothing a user computes or saved may
change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import skmeta

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _reference as R  # noqa: E402

META = np.load(R.HERE / "meta_parameters.npz")


def _close(found: dict, net: str, name: str, engine: str) -> None:
    prefix = f"{net}/{name}/{engine}/"
    expected = {k[len(prefix):]: META[k] for k in META.files if k.startswith(prefix)}
    assert sorted(found) == sorted(expected)
    for key, value in expected.items():
        scale = max(float(np.abs(value).max()), 1.0)
        np.testing.assert_allclose(found[key], value, rtol=0, atol=1e-10 * scale, err_msg=key)


@pytest.mark.parametrize("name", list(R.REGRESSORS))
@pytest.mark.parametrize("engine", ["loop", "vmap", "batched"])
def test_meta_parameters_equal_the_previous_release_on_the_sinusoid_mlp(name, engine):
    _close(R.mlp_run(name, engine), "mlp", name, engine)


@pytest.mark.parametrize("name", list(R.CLASSIFIERS))
@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_meta_parameters_equal_the_previous_release_on_the_conv_net(name, engine):
    _close(R.conv_run(name, engine), "conv", name, engine)


@pytest.mark.parametrize("name", ["maml", "metasgd", "r2d2", "anil_clf"])
def test_files_saved_by_the_previous_release_load_and_predict_identically(name):
    expected = np.load(R.HERE / "predictions.npz")[name]
    est = skmeta.load(R.HERE / f"{name}.skmeta")
    inputs = R.inputs()
    # float32 rounding: R2-D2's head is now solved by ALPaCA's solver (the same equations)
    np.testing.assert_allclose(R.predictions(name, est, inputs), expected, rtol=1e-5, atol=1e-6)
    if name != "anil_clf":
        adapted = skmeta.load(R.HERE / f"{name}_adapted.skmeta")
        X = inputs["X"]
        np.testing.assert_allclose(adapted.predict(X[10:]), expected, rtol=1e-5, atol=1e-6)

