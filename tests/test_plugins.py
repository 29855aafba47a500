"""Plugins from other packages: discovered through an entry point, checked by the public checker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "skmeta-toy-plugin"
version = "0.1"

[project.entry-points."skmeta.estimators"]
toy = "skmeta_toy"

[tool.setuptools]
py-modules = ["skmeta_toy"]
"""

PLUGIN = '''
"""A toy skmeta plugin: MAML whose inner steps are clipped, in one file."""

from skmeta.estimator import BaseMetaLearner, MetaRegressorMixin
from skmeta.functional import InnerRule, query_loss
from skmeta.estimator.parameters import FIRST_ORDER


def clipped_sgd(inner_lr):
    def update(fast, grads, state, step):
        return {k: p - inner_lr * grads[k].clamp(-1.0, 1.0) for k, p in fast.items()}

    return InnerRule(lambda params: {}, update, name=f"clipped_sgd({inner_lr})")


class ToyRegressor(MetaRegressorMixin, BaseMetaLearner):
    """MAML with clipped inner gradient steps (a toy plugin).

    Examples
    --------
    >>> ToyRegressor().inner_lr
    0.01
    """

    _params = {"first_order": FIRST_ORDER}

    def get_inner_rule(self, inner_lr=None):
        return clipped_sgd(self.inner_lr if inner_lr is None else inner_lr)

    def task_objective(self, learner, task):
        return query_loss(learner, task, steps=self.inner_steps, first_order=self.first_order)
'''

CHECK = """
import skmeta
from skmeta.registry import all_estimators, find
from skmeta.utils.estimator_checks import check_estimator

names = {name: cls for name, cls in all_estimators()}
assert "ToyRegressor" in names, sorted(names)
Toy = names["ToyRegressor"]
assert Toy.__module__ == "skmeta_toy" and find("ToyRegressor") is Toy
assert "ToyRegressor" not in {n for n, _ in all_estimators("classifier")}
check_estimator(Toy(), distributed=True)
print("plugin ok:", Toy.__name__)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="the test spawns POSIX subprocesses")
def test_an_installed_plugin_is_discovered_and_passes_the_contract(tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    (package / "pyproject.toml").write_text(PYPROJECT)
    (package / "skmeta_toy.py").write_text(textwrap.dedent(PLUGIN))
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(package)],
        capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    assert list(site.glob("skmeta_toy_plugin-*.dist-info/entry_points.txt"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    run = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "plugin ok: ToyRegressor" in run.stdout


@pytest.mark.slow
def test_a_broken_plugin_warns_and_skmeta_still_works(tmp_path):
    site = tmp_path / "site"
    dist = site / "skmeta_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: skmeta-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[skmeta.estimators]\nbroken = skmeta_broken\n")
    (site / "skmeta_broken.py").write_text("raise ImportError('this plugin is broken')\n")
    code = ("import warnings\nfrom skmeta.registry import all_estimators, PluginWarning\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    names = [n for n, _ in all_estimators()]\n"
            "assert 'MAMLRegressor' in names\n"
            "assert any(issubclass(x.category, PluginWarning) and 'broken' in str(x.message)"
            " for x in w), [str(x.message) for x in w]\nprint('ok')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert run.returncode == 0 and "ok" in run.stdout, run.stdout + run.stderr
