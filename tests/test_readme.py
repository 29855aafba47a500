"""README's quickstart runs as written (with smaller sizes)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_quickstart_runs():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    small = (code.replace("n_tasks=2000", "n_tasks=60").replace("max_epochs=50", "max_epochs=1")
             .replace('device="cpu", random_state=0)', 'device="cpu", random_state=0, verbose=0)'))
    assert small != code
    namespace: dict = {}
    exec(compile(small, "README.md", "exec"), namespace)
    assert namespace["adapted"].predict(namespace["X"][10:]).shape == (10,)


def test_readme_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ('python -m pip install torch==2.13.0 -e ".[dev]"', "python -m pytest"):
        assert command in readme and command in ci


def test_readme_and_getting_started_agree_on_how_long_things_take():
    readme = (ROOT / "README.md").read_text()
    started = (ROOT / "docs" / "getting_started.rst").read_text()
    for text in (readme, started):
        assert "plot_sinusoid.py" in text and "(30-45 s)" in text  # the main job
        assert "# the test suite (4-6 min)" in text
        assert "29 s and 41 s" in text
    assert "SKMETA_DATA=<folder> python -m pytest tests/test_omniglot.py" in readme
