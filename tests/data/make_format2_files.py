"""How tests/data/format2_*.skmeta were written: by skmeta at commit 23e3c5f (format version 2,
the last release's container), before format version 3 (safetensors). Kept to check that files
written by that release still load; running it again today writes format-3 files."""
import json

import skmeta
from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

tasks = make_sinusoid_tasks(n_tasks=8, n_samples=20, random_state=0)
meta = MAMLRegressor(k_shot=10, module__hidden=(4,), max_epochs=1, verbose=0,
                     random_state=0).fit(tasks)
X, y = tasks[0]
adapted = meta.adapt(X[:10], y[:10])
skmeta.save(meta, "tests/data/format2_meta.skmeta")
skmeta.save(adapted, "tests/data/format2_adapted.skmeta")
out = {"X": X.tolist(), "y": y.tolist(), "adapted": adapted.predict(X).tolist(),
       "meta": meta.adapt(X, y).predict(X).tolist()}
with open("tests/data/format2_expected.json", "w") as f:
    json.dump(out, f)
