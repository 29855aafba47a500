"""
Few-shot character recognition on Omniglot
==========================================

Omniglot (Lake et al., 2015) holds handwritten characters from many alphabets,
20 drawings of each. The few-shot task of Vinyals et al. (2016) and Finn et al.
(2017): tell 5 characters never seen in training apart after seeing **one**
drawing of each (5-way 1-shot). We meta-train MAML's convolutional network on
four alphabets of the small background set and test it on a fifth, Latin,
whose letters it has never seen.

The run is tiny (16 filters instead of 64, 300 meta-updates; about a minute on
a two-core CPU): enough to see MAML work, far from the paper's accuracy. The
data are read from the folder named by the ``SKMETA_DATA``
environment variable (``<SKMETA_DATA>/omniglot/images_background_small1.zip``);
without them this example stops with a message, and it never downloads.
"""

# %%
# The data: four alphabets to train on, Latin to test on
# ------------------------------------------------------
# Rotating every training character by 0, 90, 180 and 270 degrees makes four
# classes of it, as in Finn et al. (:func:`~skmeta.datasets.rotate_classes`).
import sys

import numpy as np

from skmeta.datasets import fetch_omniglot, rotate_classes

try:
    omniglot = fetch_omniglot(subset="background_small1", download_if_missing=False)
except (FileNotFoundError, ImportError) as exc:
    print(f"Omniglot is not available, so this example stops here.\n{exc}")
    sys.exit(0)

is_test = omniglot.alphabet == "Latin"
X_train, y_train = rotate_classes(omniglot.images[~is_test], omniglot.target[~is_test])
X_test, y_test = omniglot.images[is_test], omniglot.target[is_test]
print(f"training: {len(np.unique(y_train))} classes ({len(X_train)} images); "
      f"test: {len(np.unique(y_test))} Latin letters ({len(X_test)} images)")

# %%
# Meta-train MAML on 5-way 1-shot episodes
# ----------------------------------------
# Fitted on a labelled pool ``fit(X, y)``, a classifier draws ``n_episodes``
# episodes per epoch: ``n_way=5`` classes, ``k_shot=1`` support image and
# ``n_query=5`` query images of each. One inner step of size 0.4, as in the
# paper, during training; three when adapting to a test episode.
import time

import torch

from skmeta import EpisodeSampler, MAMLClassifier
from skmeta.modules import ConvNet

# One torch thread: on a two-core machine that other programs also use, a second
# thread made these convolutions many times slower in the benchmarks. On an idle
# machine with more cores, try torch's default (one thread per core).
torch.set_num_threads(1)

maml = MAMLClassifier(module=ConvNet, module__n_filters=16, n_way=5, k_shot=1, n_query=5,
                      inner_lr=0.4, inner_steps=1, adapt_steps=3, batch_size=8,
                      n_episodes=800, max_epochs=3, lr=3e-3, verbose=0, random_state=0)
start = time.perf_counter()
maml.fit(X_train, y_train)
print(f"{3 * 800 // 8} meta-updates in {time.perf_counter() - start:.0f} s "
      f"(engine: {maml.engine_.get('train')})")

# %%
# Accuracy on 100 Latin episodes
# ------------------------------
# The same adaptation from the untrained network's weights (``max_epochs=0``)
# shows what meta-training added; chance is 20%.
test_episodes = EpisodeSampler(X_test, y_test, n_way=5, k_shot=1, n_query=5, n_episodes=100,
                               random_state=1)
untrained = MAMLClassifier(**{**maml.get_params(deep=False), "max_epochs": 0})
untrained.fit(X_train, y_train)
print(f"5-way 1-shot accuracy on new letters: MAML {maml.score(test_episodes):.0%}, "
      f"untrained network {untrained.score(test_episodes):.0%}")

# %%
# One episode: the support images and the predictions
# ---------------------------------------------------
# Top row: the one drawing of each of five letters the model adapts on. Below:
# other people's drawings of the same letters, with the predicted letter: a
# tick and a green frame when right, a cross and a dashed red frame when wrong
# (the marks do not rely on colour). The adapted model returns the episode's own
# labels (``adapted.classes_``), here Omniglot's character numbers.
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

episode = test_episodes[0]
adapted = maml.adapt(episode.X_support, episode.y_support)
predicted = adapted.predict(episode.X_query)  # the whole query set at once (batch norm)
# Omniglot's Latin characters 01 to 26 are the letters a to z
names = {c: chr(ord("a") + int(omniglot.target_names[c].split("character")[-1]) - 1)
         for c in adapted.classes_}

n_rows = 1 + 4
fig, axes = plt.subplots(n_rows, 5, figsize=(6.5, 1.35 * n_rows))
for col, label in enumerate(adapted.classes_):
    ax = axes[0, col]
    ax.imshow(episode.X_support[episode.y_support == label][0, 0], cmap="gray_r")
    ax.set_title(f"support: {names[label]}", fontsize=8)
    queries = np.flatnonzero(episode.y_query == label)[:n_rows - 1]
    for row, q in enumerate(queries, start=1):
        ax = axes[row, col]
        ax.imshow(episode.X_query[q, 0], cmap="gray_r")
        right = predicted[q] == label
        color = "tab:green" if right else "tab:red"
        ax.set_title(f"{'✓' if right else '✗'} {names[predicted[q]]}", fontsize=9,
                     color=color)
        for spine in ax.spines.values():
            spine.set(color=color, linewidth=2, linestyle="-" if right else "--")
for ax in axes.ravel():
    ax.set(xticks=[], yticks=[])
fig.suptitle("5-way 1-shot on Latin letters never seen in training", fontsize=10)
fig.tight_layout()
