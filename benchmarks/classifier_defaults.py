"""Do the classifiers' default settings learn? Held-out 5-way 5-shot accuracy, per setting.

Two pools, each split into meta-training classes and held-out classes:

* ``blobs``: 30 Gaussian classes of 20 points in 8 dimensions
  (``make_blobs(cluster_std=4)``), meta-trained on 20 classes, scored on the other 10;
* ``pool30``: 30 classes of 20 points in 20 dimensions (``make_classification``, 15
  informative features, standardised), meta-trained on 20 classes, scored on the other 10
  (the pool of the issue that asked for these defaults);
* ``omniglot``: the small Omniglot subsets (28x28 pixels), meta-trained on
  ``background_small1`` (136 characters), scored on ``background_small2`` (156), with
  the default MLP.

Every estimator runs with its defaults except ``random_state`` (and ``max_epochs`` for
Omniglot, ``--omniglot-epochs``, 3 by default, to keep the run short), once with the
settings given on the command line (``--set inner_lr=0.01`` gives the
previous release's defaults). Nearest centroid on the raw features scores the same
episodes: where it wins, it is the better tool. The last training loss is printed next
to ln(n_way) = 1.609, the loss of a network that learned nothing.

    python benchmarks/classifier_defaults.py                      # today's defaults
    python benchmarks/classifier_defaults.py --set inner_lr=0.01       # the previous ones
    python benchmarks/classifier_defaults.py --only MAMLClassifier --data blobs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

import _common  # noqa: F401  (puts the checkout on sys.path)
import numpy as np
from sklearn.datasets import make_blobs

import skmeta
from skmeta import EpisodeSampler

CLASSIFIERS = ["MAMLClassifier", "MetaSGDClassifier", "ANILClassifier",
               "MAMLPlusPlusClassifier", "ReptileClassifier", "R2D2Classifier",
               "PretrainedClassifier"]


def pools(which: list[str], data_home: str | None):
    if "blobs" in which:
        X, y = make_blobs(n_samples=600, centers=30, n_features=8, cluster_std=4.0,
                          center_box=(-6, 6), random_state=0)
        X = X.astype(np.float32)
        yield "blobs", (X[y < 20], y[y < 20]), (X[y >= 20], y[y >= 20])
    if "pool30" in which:
        from sklearn.datasets import make_classification
        from sklearn.preprocessing import StandardScaler

        X, y = make_classification(n_samples=600, n_features=20, n_informative=15,
                                   n_redundant=0, n_classes=30, n_clusters_per_class=1,
                                   random_state=0)
        X = StandardScaler().fit_transform(X).astype(np.float32)
        yield "pool30", (X[y < 20], y[y < 20]), (X[y >= 20], y[y >= 20])
    if "omniglot" in which:
        from skmeta.datasets import fetch_omniglot

        train = fetch_omniglot(subset="background_small1", data_home=data_home,
                               download_if_missing=False, return_X_y=True)
        test = fetch_omniglot(subset="background_small2", data_home=data_home,
                              download_if_missing=False, return_X_y=True)
        yield "omniglot", train, test


def centroid_accuracy(X, y, n_episodes: int = 200) -> float:
    with warnings.catch_warnings():  # classes too small are named once, by the estimators
        warnings.simplefilter("ignore", UserWarning)
        episodes = EpisodeSampler(X, y, n_way=5, k_shot=5, n_query=15,
                                  n_episodes=n_episodes, random_state=1)
    acc = []
    for e in episodes:
        Xs, Xq = e.X_support.reshape(len(e.X_support), -1), e.X_query.reshape(len(e.X_query), -1)
        labels = np.unique(e.y_support)
        centres = np.stack([Xs[e.y_support == c].mean(0) for c in labels])
        pred = labels[((Xq[:, None] - centres[None]) ** 2).sum(-1).argmin(1)]
        acc.append(float((pred == e.y_query).mean()))
    return float(np.mean(acc))


def parse_settings(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out[key] = int(value) if value.isdigit() else float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="", help="settings for every estimator, k=v,k=v")
    parser.add_argument("--only", nargs="*", default=CLASSIFIERS)
    parser.add_argument("--data", nargs="*", default=["blobs", "pool30", "omniglot"])
    parser.add_argument("--omniglot-epochs", type=int, default=3)
    parser.add_argument("--data-home", default=os.environ.get("SKMETA_DATA"))
    parser.add_argument("--json", default=None, help="append the results to this file")
    args = parser.parse_args()
    settings = parse_settings(args.set)
    rows = []
    for data, (Xtr, ytr), (Xte, yte) in pools(args.data, args.data_home):
        print(f"{data}: nearest centroid {centroid_accuracy(Xte, yte):.3f}", flush=True)
        for name in args.only:
            cls = getattr(skmeta, name)
            params = dict(settings, verbose=0, random_state=0)
            if data == "omniglot":
                params["max_epochs"] = args.omniglot_epochs
            params = {k: v for k, v in params.items() if k in cls().get_params()}
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                est = cls(**params).fit(Xtr, ytr)
                accuracy = est.score(Xte, yte)
            row = {"data": data, "estimator": name, "settings": args.set or "defaults",
                   "inner_lr": est.inner_lr, "inner_steps": est.inner_steps,
                   "max_epochs": est.max_epochs,
                   "accuracy": round(accuracy, 3),
                   "train_loss": round(float(est.history_[-1, "train_loss"]), 3),
                   "chance_loss": round(math.log(est.n_way), 3),
                   "flat_warning": any("still at chance" in str(w.message) for w in caught),
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
