"""
Tabular tasks in long format: a pipeline with scaling and GroupKFold
====================================================================

Real tabular data rarely comes as a list of tasks. More often it is one table with
a column that says which task (site, customer, machine) each row belongs to. Here
a fleet of weather stations each relate three raw measurements, on very different
scales, to a target in their own way. We meta-learn across stations with a
``StandardScaler`` + ``MAMLRegressor`` pipeline, pass the station ids as
``groups`` with scikit-learn's metadata routing, select ``inner_lr`` with
``GroupKFold`` (whole stations in each fold), and adapt the fitted pipeline to a
new station from 10 rows with :func:`skmeta.pipeline.adapt_pipeline`.
"""

# %%
# A table of stations
# -------------------
# Each station ``s`` has three raw features on very different scales
# (temperature in degrees C, pressure in Pa, relative humidity in %) and a
# target ``y = a_s * sin(t + phi_s) + b_s * h``, where ``t`` and ``h`` are the
# standardised temperature and humidity and ``a_s``, ``phi_s``, ``b_s`` are the
# station's own. The pressure is irrelevant noise with a large scale.
import numpy as np
import sklearn
import torch
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skmeta import MAMLRegressor
from skmeta.pipeline import adapt_pipeline


def make_stations(n_stations, n_rows, random_state):
    rng = np.random.default_rng(random_state)
    temperature = rng.normal(15, 8, size=(n_stations, n_rows))
    pressure = rng.normal(101_325, 1_500, size=(n_stations, n_rows))
    humidity = rng.uniform(20, 100, size=(n_stations, n_rows))
    a = rng.uniform(0.5, 3.0, size=(n_stations, 1))
    phi = rng.uniform(0, np.pi, size=(n_stations, 1))
    b = rng.uniform(-1.0, 1.0, size=(n_stations, 1))
    t, h = (temperature - 15) / 8, (humidity - 60) / 23
    y = a * np.sin(t + phi) + b * h + rng.normal(0, 0.05, size=t.shape)
    X = np.stack([temperature, pressure, humidity], axis=-1).reshape(-1, 3)
    station = np.repeat(np.arange(n_stations), n_rows)
    return X.astype(np.float32), y.reshape(-1).astype(np.float32), station


torch.set_num_threads(1)  # small network: one thread (see plot_sinusoid.py)
X, y, station = make_stations(n_stations=240, n_rows=25, random_state=0)
print(f"{len(X)} rows, {len(np.unique(station))} stations; feature means {X.mean(0).round(1)}")

# %%
# A pipeline that receives the station ids
# ----------------------------------------
# With metadata routing enabled, the meta-learner asks for ``groups`` in ``fit``
# and ``score``; the pipeline and ``GridSearchCV`` pass them on, and
# ``GroupKFold`` uses the same ids to keep every station whole in one fold, so
# that the validation stations are new to the model. The scaler matters: without
# it the network would see a pressure column around 100,000 next to a humidity
# column below 100.
sklearn.set_config(enable_metadata_routing=True)

maml = MAMLRegressor(k_shot=10, inner_steps=1, batch_size=20, lr=3e-3, max_epochs=30,
                     module__hidden=(40, 40), verbose=0, random_state=0)
maml.set_fit_request(groups=True).set_score_request(groups=True)
pipe = Pipeline([("scale", StandardScaler()), ("maml", maml)])

search = GridSearchCV(pipe, {"maml__inner_lr": [0.01, 0.1]}, cv=GroupKFold(n_splits=3))
search.fit(X, y, groups=station)
for lr, score in zip(search.cv_results_["param_maml__inner_lr"],
                     search.cv_results_["mean_test_score"]):
    print(f"inner_lr={lr:<5} pooled R² on held-out stations after adaptation "
          f"(mean over folds): {score:.3f}")

# %%
# Adapt to a new station from 10 rows
# -----------------------------------
# :func:`~skmeta.pipeline.adapt_pipeline` passes the new station's raw rows
# through the fitted scaler, adapts the meta-learner, and returns a pipeline that
# predicts on raw features. The cross-validation above scored one adaptation
# step (``adapt_steps`` defaults to ``inner_steps=1``); here we take five.
X_new, y_new, _ = make_stations(n_stations=1, n_rows=60, random_state=1)
adapted = adapt_pipeline(search.best_estimator_, X_new[:10], y_new[:10], adapt_steps=5)
before = adapt_pipeline(search.best_estimator_, X_new[:10], y_new[:10], adapt_steps=0)
print("R² on the new station's other 50 rows:",
      f"before adapting {before.score(X_new[10:], y_new[10:]):.3f},",
      f"after 5 steps {adapted.score(X_new[10:], y_new[10:]):.3f}")

# %%
# Predicted against true values on the new station's 50 other rows: on the
# diagonal, the prediction is right. Before adapting, the network predicts
# roughly what an average station would; after five steps on 10 rows, the
# points line up along the diagonal.
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

y_test = y_new[10:]
panels = [(before, "before adapting (0 steps)"), (adapted, "after 5 steps on 10 rows")]
predictions = [model.predict(X_new[10:]) for model, _ in panels]
values = np.concatenate([y_test, *predictions])
limits = [values.min() - 0.3, values.max() + 0.3]
fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True,
                         layout="constrained")
for ax, (model, title), y_pred in zip(axes, panels, predictions):
    ax.plot(limits, limits, color="0.6", lw=1, label="prediction = truth")
    ax.plot(y_test, y_pred, "o", color="C0", ms=4, alpha=0.8, label="50 held-out rows")
    ax.set(title=f"{title}\nR² = {model.score(X_new[10:], y_test):.2f}", xlim=limits,
           ylim=limits, xlabel="true y", aspect="equal")
axes[0].set_ylabel("predicted y")
axes[0].legend(fontsize=8, loc="upper left")

sklearn.set_config(enable_metadata_routing=False)
