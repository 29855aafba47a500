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
