"""Draw the charts and summary tables of the docs from the saved results in benchmarks/results.

Reads the JSON files the benchmark scripts wrote (whichever exist) and writes, into
``docs/_static/benchmarks``, PNG charts (shown on docs/benchmarks.md) and reStructuredText
tables (``*_summary.txt``, included by docs/user_guide/when_meta_learning_pays.rst) with their
Markdown twins (``*_summary.md``), so that the numbers in the docs are the numbers in the
results files. The outputs are committed, so that the benchmark page's charts and tables
render where the repository is read (GitHub), and ``tests/test_docs.py`` checks that
they are current. The docs build runs it (``docs/conf.py``); after a benchmark run,
regenerate them from the repository root::

    python benchmarks/charts.py
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "_static" / "benchmarks"


def _load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


SPEED_NAMES = {"maml2": "MAML, 2nd order", "maml1": "MAML, 1st order", "reptile": "Reptile"}


def _speed_medians(files: dict[int, dict]):
    """(algorithm's name, meta-batch size, median ms per meta-iteration of each implementation)."""
    for mb, payload in sorted(files.items()):
        for algo, res in payload["speed"].items():
            yield (SPEED_NAMES.get(algo, algo), mb,
                   {n: 1e3 * median(ts) for n, ts in res["times"].items()})


def speed(files: dict[int, dict]) -> None:
    """ms per meta-iteration: skmeta's fit against a plain PyTorch loop, per meta-batch size."""
    rows = [(f"{name}\nmeta-batch {mb}", med["skmeta fit"], med["plain loop"])
            for name, mb, med in _speed_medians(files)]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r[2] for r in rows], 0.4, label="plain PyTorch loop",
           color="C7", hatch="//")
    ax.bar([i + 0.2 for i in x], [r[1] for r in rows], 0.4, label="skmeta fit", color="C0")
    for i, r in enumerate(rows):
        ax.text(i + 0.2, r[1], f"{r[2] / r[1]:.1f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), [r[0] for r in rows], fontsize=8)
    ax.set(ylabel="ms per meta-iteration (log)", yscale="log",
           title="Sine waves, MLP 1-40-40-1: time per meta-iteration (one CPU thread)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "speed.png", dpi=110)


def sinusoid(algos: dict, baselines: dict | None) -> None:
    """Query MSE after adaptation, every algorithm and the per-task baselines, K = 5, 10, 20."""
    fig, ax = plt.subplots(figsize=(8, 4.6))
    names = list(algos["results"])
    ks = (5, 10, 20)
    width = 0.8 / (len(names) + (2 if baselines else 0))
    for j, name in enumerate(names):
        r = algos["results"][name]["mse"]
        ax.bar([i + j * width for i in range(3)], [r[f"K={k},steps=1"][0] for k in ks], width,
               label=f"{name} (1 step)")
    if baselines:
        for j, (label, key) in enumerate([("Gaussian process per task", "gp"),
                                          ("MLP from scratch per task", "mlp")]):
            vals = [baselines[key][str(k)] for k in ks]
            ax.bar([i + (len(names) + j) * width for i in range(3)], vals, width, label=label,
                   color="k" if key == "gp" else "0.6", hatch="xx" if key == "gp" else "..")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(3)], [f"K = {k}" for k in ks])
    ax.set(yscale="log", ylabel="mean query MSE (log)",
           title=f"Sine waves: {algos['iterations']:,} meta-iterations, "
                 f"{algos['test_tasks']} fresh tasks")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(OUT / "sinusoid.png", dpi=110)


def omniglot(payload: dict) -> None:
    """5-way accuracy on unseen alphabets, and 5-way 1-shot accuracy against training time."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = sorted(payload["results"], key=lambda r: r["accuracy"]["5-way 1-shot"]["mean"])
    y = range(len(rows))
    for shift, setting, color in ((-0.2, "5-way 1-shot", "C0"), (0.2, "5-way 5-shot", "C1")):
        left.barh([i + shift for i in y], [100 * r["accuracy"][setting]["mean"] for r in rows],
                  0.4, xerr=[100 * r["accuracy"][setting]["ci95"] for r in rows], label=setting,
                  color=color)
    left.set_yticks(list(y), [r["label"].replace(", no training", "") for r in rows], fontsize=7)
    left.set(xlim=(30, 100), xlabel="accuracy (%), 600 episodes, 95% CI",
             title="Omniglot, unseen alphabets")
    left.legend(fontsize=8, loc="lower right")
    trained = [r for r in reversed(rows) if r["settings"].get("train_seconds")]
    for marker, r in zip("osD^v<>xP", trained):
        # 100 episodes every few minutes, then the final model on 600 (older runs: only that)
        curve = r["settings"].get("curve") or []
        minutes = [t / 60 for t, _, _ in curve] + [r["settings"]["train_seconds"] / 60]
        acc = [100 * a for _, _, a in curve] + [100 * r["accuracy"]["5-way 1-shot"]["mean"]]
        right.plot(minutes, acc, marker=marker, label=r["label"])
    right.set(xlabel="training time (minutes, one CPU thread per model)",
              ylabel="5-way 1-shot accuracy (%)", title="Accuracy vs training time")
    if right.lines:
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "omniglot.png", dpi=110, bbox_inches="tight")


def tables(files: dict[str, dict]) -> None:
    """Query MSE on held-out schools, every method, relative to the mixed model."""
    panels = [(table, key, summary) for table, payload in files.items()
              for key, summary in payload["summary"].items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 5), sharey=False)
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, (_table, key, summary) in zip(axes, panels):
        ref = next(r for r in summary if r["method"] == "LMM, random intercept + slope")
        rows = sorted(summary, key=lambda r: r["mean_school_mse"])
        vals = [r["mean_school_mse"] / ref["mean_school_mse"] for r in rows]
        colors = ["C0" if not r["method"].startswith(("pooled", "ridge", "LMM")) else "0.6"
                  for r in rows]
        ax.barh(range(len(rows)), vals, color=colors)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_yticks(range(len(rows)), [r["method"] for r in rows], fontsize=6)
        ax.invert_yaxis()
        ax.set(xlim=(0.85, 1.3), xlabel="query MSE / mixed model's", title=key)
    fig.tight_layout()
    fig.savefig(OUT / "tables.png", dpi=110)


class _Table(str):
    """An RST list-table (the text), with its header and rows for the Markdown twin."""

    header: list[str]
    rows: list[list[str]]


def _list_table(header: list[str], rows: list[list[str]], widths: str = "auto") -> _Table:
    """An RST list-table."""
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    table = _Table("\n".join(lines) + "\n")
    table.header, table.rows = header, rows
    return table


def _markdown(table: _Table) -> str:
    """The same table in Markdown, which GitHub renders where the repository is read."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(table.header), line(["---"] * len(table.header)),
                      *map(line, table.rows)]) + "\n"


def _write(name: str, text: _Table) -> None:
    """Write ``name`` (RST, for the docs build) and its Markdown twin (``.md``)."""
    (OUT / name).write_text(text, encoding="utf-8")
    (OUT / name.replace(".txt", ".md")).write_text(_markdown(text), encoding="utf-8")


def sinusoid_summary(algos: dict, baselines: dict | None) -> None:
    """Query MSE at K = 5, 10, 20 (one adaptation step, and ten) beside the per-task baselines."""
    ks = (5, 10, 20)
    rows = []
    for name, res in algos["results"].items():
        cells = []
        for k in ks:
            one, ten = res["mse"][f"K={k},steps=1"][0], res["mse"][f"K={k},steps=10"][0]
            ten_text = f"{ten:.3g}" if ten == ten and ten < 100 else "diverges"
            cells.append(f"{one:.3g} / {ten_text}")
        rows.append([f"{name} (1 / 10 steps)", *cells])
    if baselines:
        for label, key in (("Gaussian process per task: mean (median)", "gp"),
                           ("MLP from scratch per task: mean (median)", "mlp")):
            rows.append([label, *[f"{baselines[key][str(k)]:.3g} "
                                  f"({baselines[key + '_median'][str(k)]:.2g})" for k in ks]])
    _write("sinusoid_summary.txt",
           _list_table(["method", *[f"K = {k}" for k in ks]], rows, "40 20 20 20"))


def speed_summary(files: dict[int, dict]) -> None:
    """ms per meta-iteration (median over rounds) and the speed-up over the plain loop."""
    rows = []
    for name, mb, med in _speed_medians(files):
        loop, fit = med["plain loop"], med["skmeta fit"]
        shell = med.get("skmeta fit, meta-gradient cached (shell only)")
        rows.append([f"{name}, meta-batch {mb}", f"{loop:.2f}", f"{fit:.2f}",
                     f"**{loop / fit:.1f}x**",
                     f"{med['raw batched']:.2f}" if "raw batched" in med else "—",
                     f"{med['raw vmap']:.2f}" if "raw vmap" in med else "—",
                     "—" if shell is None else f"{shell:.2f}"])
    _write("speed_summary.txt", _list_table(
        ["algorithm", "plain loop, ms", "skmeta fit, ms", "speed-up",
         "batched engine alone, ms", "vmap engine alone, ms", "estimator shell, ms"], rows))


def profile_summary(before: dict, after: dict) -> None:
    """Wall time and ATen operations per meta-iteration, before and after."""
    rows = []
    for order in ("second", "first"):
        b, a = before["results"][order], after["results"][order]
        rows.append([f"MAML, {order} order", f"{b['wall_ms']:.2f}", f"{a['wall_ms']:.2f}",
                     f"{b['aten_calls']:.0f}", f"{a['aten_calls']:.0f}",
                     f"{b['engine'].get('train', '?')} → {a['engine'].get('train', '?')}"])
    _write("profile_summary.txt", _list_table(
        ["algorithm", "ms / meta-iteration, before", "after", "ATen operations, before", "after",
         "engine chosen"], rows))


def omniglot_summary(payload: dict) -> None:
    """Accuracy (%) with its 95% interval in every test setting, best 5-way 1-shot first."""
    settings = list(payload["results"][0]["accuracy"])
    rows = []
    for r in sorted(payload["results"], key=lambda r: -r["accuracy"]["5-way 1-shot"]["mean"]):
        acc = r["accuracy"]
        iters = r["settings"].get("meta_iterations") or r["settings"].get("steps")
        rows.append([r["label"], *[f"{100 * acc[s]['mean']:.1f} ± {100 * acc[s]['ci95']:.1f}"
                                   for s in settings],
                     f"{iters:,}" if iters else "no training"])
    _write("omniglot_summary.txt",
           _list_table(["model", *settings, "training iterations"], rows))


def tables_summary(files: dict[str, dict]) -> None:
    """Query MSE (mean over held-out schools, mean ± sd over runs) for every method and k."""
    columns = [(table, key) for table, payload in files.items() for key in payload["summary"]]
    methods: list[str] = []
    for table, key in columns:
        for r in files[table]["summary"][key]:
            if r["method"] not in methods:
                methods.append(r["method"])
    rows = []
    for method in methods:
        cells = []
        for table, key in columns:
            summary = files[table]["summary"][key]
            r = next((r for r in summary if r["method"] == method), None)
            if r is None:
                cells.append("—")
                continue
            text = f"{r['mean_school_mse']:.3f} ± {r['mean_school_mse_sd']:.3f}"
            best = min(x["mean_school_mse"] for x in summary)
            cells.append(f"**{text}**" if r["mean_school_mse"] == best else text)
        rows.append([method, *cells])
    _write("tables_summary.txt",
           _list_table(["method", *[key.replace("/", ", ") for _, key in columns]], rows))


def _sinusoid_runs(main: str, prior: str) -> dict | None:
    """algorithms.py's run of every algorithm, with the R2-D2 rows of its prior run.

    The main run's R2-D2 had the zero prior; the second run compares both priors with the
    same protocol.
    """
    algos, extra = _load(main), _load(prior)
    if not algos or not extra:
        return algos
    if (extra["iterations"], extra["test_tasks"]) != (algos["iterations"], algos["test_tasks"]):
        raise ValueError(f"{prior} and {main} differ in iterations or test tasks.")
    results = {}
    for name, res in algos["results"].items():
        if name == "R2-D2":
            results["R2-D2 (zero prior)"] = res
            results["R2-D2 (learned prior)"] = extra["results"]["R2-D2 (learned prior)"]
        else:
            results[name] = res
    return {**algos, "results": results}


def _omniglot_runs(*names: str) -> dict | None:
    """The results of several omniglot.py runs on the same data, as one run.

    The raw-pixel baselines (``--baselines-only``) train nothing; every other run must
    have had the same training budget.
    """
    runs = [p for name in names if (p := _load(name))]
    if not runs:
        return None
    differ = {k for run in runs[1:] for k in ("config", "train", "test") if run[k] != runs[0][k]}
    if len({run["minutes_per_model"] for run in runs if run["minutes_per_model"]}) > 1:
        differ.add("minutes_per_model")
    if differ:
        raise ValueError(f"Omniglot runs differ in {sorted(differ)}: rerun them with the same "
                         "settings before charting them together.")
    return {**runs[0], "results": [r for run in runs for r in run["results"]]}


def main(out: Path | None = None) -> None:
    global OUT
    if out is not None:
        OUT = Path(out)
    OUT.mkdir(parents=True, exist_ok=True)
    files = {mb: p for mb in (25, 100) if (p := _load(f"sinusoid_speed_mb{mb}.json"))}
    if files:
        speed(files)
        speed_summary(files)
    before, after = _load("profile_before.json"), _load("profile_after.json")
    if before and after:
        profile_summary(before, after)
    algos = _sinusoid_runs("algorithms_sinusoid.json", "algorithms_r2d2_prior.json")
    if algos:
        baselines = _load("sinusoid_baselines_summary.json")
        sinusoid(algos, baselines)
        sinusoid_summary(algos, baselines)
    omni = _omniglot_runs("omniglot_cpu.json", "omniglot_cpu_plugins.json",
                          "omniglot_pixels.json")
    if omni:
        omniglot(omni)
        omniglot_summary(omni)
    tabs = {t: p for t in ("exam", "chem97") if (p := _load(f"tables_{t}.json"))}
    if tabs:
        tables(tabs)
        tables_summary(tabs)
    print("charts written to", OUT)


if __name__ == "__main__":
    main()
