"""Meta-SGD, ANIL, MAML++ and R2-D2 against MAML and against hand-written references."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skorch.callbacks import Checkpoint
from skorch.history import History
from torch import nn

import skmeta
from skmeta import (
    ANILClassifier,
    ANILRegressor,
    MAMLClassifier,
    MAMLPlusPlusClassifier,
    MAMLPlusPlusRegressor,
    MAMLRegressor,
    MetaSGDClassifier,
    MetaSGDRegressor,
    R2D2Classifier,
    R2D2Regressor,
)
from skmeta import functional as F
from skmeta.algorithms.mamlpp import MAMLPlusPlusSchedule, msl_weights
from skmeta.data import as_tasks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import DoubleConvNet, DoubleMLP  # noqa: E402
from _reference import conv_pool as _conv_pool  # noqa: E402

FAST = dict(max_epochs=1, verbose=0, random_state=0)
ALL_OFF = dict(multi_step_loss_epochs=0, first_order_epochs=0, learn_inner_lr=False,
               per_step_bn=False, cosine_annealing=False)


def _batch(est, tasks, n=8, seed=0):
    rng = np.random.default_rng(seed)
    return est.get_meta_batch(as_tasks(tasks, classification=est._classification),
                              np.arange(n), rng, training=True)


def _state(est):
    out = {f"m.{k}": v.detach().clone() for k, v in est.module_.state_dict().items()}
    out.update({f"s.{k}": v.detach().clone() for k, v in est.inner_state_.state_dict().items()})
    return out


def _initialized(Est, tasks, **kw):
    est = Est(**{**FAST, "max_epochs": 0, **kw}).fit(tasks)
    return est


CONV = dict(module=DoubleConvNet, module__n_filters=3, module__n_blocks=2, module__image_size=8,
            n_way=3, k_shot=1, n_query=2, n_episodes=6, batch_size=3)

# ------------------------------------------------------------------ Meta-SGD


@pytest.mark.parametrize("engine", ["vmap", "loop", "batched"])
def test_meta_sgd_with_rates_at_inner_lr_is_maml_bit_for_bit(engine, sinusoid_tasks):
    kw = dict(k_shot=10, inner_lr=0.05, inner_steps=2, engine=engine)
    maml = _initialized(MAMLRegressor, sinusoid_tasks, **kw)
    msgd = _initialized(MetaSGDRegressor, sinusoid_tasks, **kw)
    batch = _batch(maml, sinusoid_tasks)
    loss_a, ga = maml.get_meta_gradient(batch, engine)
    loss_b, gb = msgd.get_meta_gradient(batch, engine)
    assert torch.equal(loss_a, loss_b)
    for k, g in ga.items():
        assert torch.equal(g, gb[k]), k
    assert any(gb[k].abs().sum() > 0 for k in gb if k.startswith("inner_state_."))
    # frozen rates: whole fits agree bit for bit
    msgd.inner_state_.requires_grad_(False)
    for est in (maml, msgd):
        est.set_params(max_epochs=2).partial_fit(sinusoid_tasks)
    for (k, a), b in zip(maml.module_.state_dict().items(), msgd.module_.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(torch.all(r == 0.05) for r in msgd.inner_state_.tensors().values())


def test_meta_sgd_learns_its_rates_and_adapt_uses_them(sinusoid_tasks):
    est = MetaSGDRegressor(k_shot=10, inner_lr=0.05, **FAST).fit(sinusoid_tasks)
    rates = est.inner_state_.tensors()
    assert set(rates) == {k for k, _ in est.module_.named_parameters()}
    assert any(not torch.all(r == 0.05) for r in rates.values())  # meta-learned
    X, y = sinusoid_tasks[0]
    before = est.adapt(X[:10], y[:10]).predict(X[10:])
    with torch.no_grad():
        for r in est.inner_state_.parameters():
            r.mul_(3)
    after = est.adapt(X[:10], y[:10]).predict(X[10:])
    assert not np.allclose(before, after)
    with pytest.raises(ValueError, match="learned inner learning rates.*cannot override"):
        est.adapt(X[:10], y[:10], inner_lr=0.1)


def test_learned_state_survives_pickle_checkpoint_and_safe_format(sinusoid_tasks, tmp_path):
    cp = Checkpoint(dirname=str(tmp_path / "cp"), monitor=None)
    est = MetaSGDRegressor(k_shot=10, callbacks=[cp], **{**FAST, "max_epochs": 2})
    est.fit(sinusoid_tasks)
    X, y = sinusoid_tasks[1]
    expected = est.adapt(X[:10], y[:10]).predict(X[10:])
    state = _state(est)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.adapt(X[:10], y[:10]).predict(X[10:]), expected)
    fresh = MetaSGDRegressor(k_shot=10, **FAST).fit(sinusoid_tasks[:5])
    fresh.load_params(checkpoint=cp)  # f_params holds the network and the learned rates
    assert all(torch.equal(v, _state(fresh)[k]) for k, v in state.items())
    with pytest.warns(UserWarning, match="callbacks"):
        est.save(tmp_path / "msgd.skmeta")
    loaded = skmeta.load(tmp_path / "msgd.skmeta")
    assert all(torch.equal(v, _state(loaded)[k]) for k, v in state.items())
    np.testing.assert_array_equal(loaded.adapt(X[:10], y[:10]).predict(X[10:]), expected)
    adapted = loaded.adapt(X[:10], y[:10])
    assert adapted.inner_lr_ == "learned"
    assert sum(p.numel() for p in adapted.module_.parameters()) == \
        sum(p.numel() for p in est.module_.parameters())  # the network only, no rates


# ---------------------------------------------------------------------- ANIL


def _anil_reference(est, batch, steps, inner_lr, first_order):
    """ANIL's meta-gradient written by hand: body features once, head steps, query loss."""
    net = est.module_
    params = {k: v.detach().clone().requires_grad_() for k, v in net.named_parameters()}
    head = est.head_[0]
    body_names = [k for k in params if not k.startswith(head + ".")]
    total = 0.0
    (_, b), = batch.groups
    for t in range(b.n_tasks):
        fast = {k: params[k] for k in params if k.startswith(head + ".")}
        for _ in range(steps):
            out = F.forward(net, {**params, **fast}, {}, b.X_support[t])
            loss = nn.functional.mse_loss(out, b.y_support[t])
            gs = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {k: v - inner_lr * g for (k, v), g in zip(fast.items(), gs)}
        total = total + nn.functional.mse_loss(F.forward(net, {**params, **fast}, {},
                                                         b.X_query[t]), b.y_query[t])
    total = total / b.n_tasks
    grads = torch.autograd.grad(total, list(params.values()))
    assert body_names
    return total.detach(), dict(zip(params, grads))


@pytest.mark.parametrize("engine", ["vmap", "loop", "batched"])
@pytest.mark.parametrize("first_order", [False, True])
def test_anil_meta_gradient_matches_hand_written_loop(engine, first_order, sinusoid_tasks):
    est = _initialized(ANILRegressor, sinusoid_tasks, k_shot=10, inner_lr=0.1, inner_steps=2,
                       first_order=first_order, module__hidden=(8, 8))
    assert est.head_ == ["layers.4"] and est.head_only_
    batch = _batch(est, sinusoid_tasks, n=5)
    loss, grads = est.get_meta_gradient(batch, engine)
    ref_loss, ref = _anil_reference(est, batch, 2, 0.1, first_order)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for k, g in ref.items():
        torch.testing.assert_close(grads[f"module_.{k}"], g, rtol=1e-4, atol=1e-6)


def test_anil_adapt_moves_only_the_head(sinusoid_tasks):
    est = ANILRegressor(k_shot=10, inner_lr=0.5, **FAST).fit(sinusoid_tasks)
    X, y = sinusoid_tasks[2]
    adapted = est.adapt(X[:10], y[:10], adapt_steps=5)
    meta = dict(est.module_.named_parameters())
    for k, v in adapted.module_.named_parameters():
        if k.startswith("layers.4."):
            assert not torch.equal(v, meta[k]), k
        else:
            assert torch.equal(v, meta[k]), k  # the body, bit for bit


def test_anil_head_parameter_and_fallback_when_head_is_not_last(sinusoid_tasks):
    est = _initialized(ANILRegressor, sinusoid_tasks, k_shot=10, head=["layers.2", "layers.4"])
    assert est.head_ == ["layers.2", "layers.4"] and not est.head_only_
    X, y = sinusoid_tasks[0]
    adapted = est.adapt(X[:10], y[:10])
    assert torch.equal(adapted.module_.layers[0].weight, est.module_.layers[0].weight)
    assert not torch.equal(adapted.module_.layers[2].weight, est.module_.layers[2].weight)
    not_last = _initialized(ANILRegressor, sinusoid_tasks, k_shot=10, head="layers.0")
    assert not not_last.head_only_  # still exact: the whole network runs at every step
    with pytest.raises(ValueError, match="head='nope' names no submodule"):
        _initialized(ANILRegressor, sinusoid_tasks, k_shot=10, head="nope")


def test_anil_classifier_on_a_conv_net_caches_the_body():
    X, y = _conv_pool()
    est = ANILClassifier(**{**CONV, "n_episodes": 4}, **FAST).fit(X, y)
    assert est.head_ == ["head"] and est.head_only_


# ------------------------------------------------------------------- MAML++


def test_msl_weights_follow_the_papers_schedule():
    w = msl_weights(5, 0, 10)
    np.testing.assert_allclose(w, 0.2)
    w3 = msl_weights(5, 3, 10)  # non-final: 0.2 - 3 * 0.02; final: 0.2 + 3 * 4 * 0.02
    np.testing.assert_allclose(w3, [0.14, 0.14, 0.14, 0.14, 0.44])
    late = msl_weights(5, 100, 10)
    np.testing.assert_allclose(late[:-1], 0.006)
    assert late[-1] == pytest.approx(1 - 4 * 0.006)
    assert msl_weights(1, 7, 10).tolist() == [1.0]


@pytest.mark.parametrize("engine", ["vmap", "loop", "batched"])
def test_maml_plus_plus_with_every_trick_off_is_maml_bit_for_bit(engine, sinusoid_tasks):
    kw = dict(k_shot=10, inner_lr=0.05, inner_steps=2, engine=engine)
    maml = MAMLRegressor(**kw, **{**FAST, "max_epochs": 2}).fit(sinusoid_tasks)
    pp = MAMLPlusPlusRegressor(**kw, **ALL_OFF, **{**FAST, "max_epochs": 2}).fit(sinusoid_tasks)
    for (k, a), b in zip(maml.module_.state_dict().items(), pp.module_.state_dict().values()):
        assert torch.equal(a, b), k
    assert len(pp.inner_state_.tensors()) == 0


def _hand_inner(net, params, rates, X, y, steps, first_order, loss_fn):
    fast = dict(params)
    fasts = []
    for k in range(steps):
        loss = loss_fn(F.forward(net, fast, {}, X, step=k), y)
        gs = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
        fast = {n: v - rates[n][k] * g for (n, v), g in zip(fast.items(), gs)}
        fasts.append(fast)
    return fasts


@pytest.mark.parametrize("epoch", [0, 1, 2, 5])
def test_maml_plus_plus_msl_lslr_and_derivative_order_against_a_hand_written_loop(
        epoch, sinusoid_tasks):
    est = _initialized(MAMLPlusPlusRegressor, sinusoid_tasks, k_shot=10, inner_lr=0.05,
                       inner_steps=3, multi_step_loss_epochs=4, first_order_epochs=2,
                       cosine_annealing=False, module__hidden=(8,))
    with torch.no_grad():  # distinct learned rates per layer and step
        for i, r in enumerate(est.inner_state_.parameters()):
            r.copy_(torch.tensor([0.05, 0.02, 0.08]) * (1 + 0.1 * i))
    est.history_ = History([{"epoch": e + 1} for e in range(epoch + 1)])
    MAMLPlusPlusSchedule().on_epoch_begin(est)  # the callback sets the epoch's schedules
    assert est.uses_second_order() == (epoch >= 2)  # derivative-order annealing
    batch = _batch(est, sinusoid_tasks, n=4)
    loss, grads = est.get_meta_gradient(batch, "loop")
    # the reference
    net = est.module_
    params = {k: v.detach().clone().requires_grad_() for k, v in net.named_parameters()}
    rates = {k: v.detach().clone().requires_grad_() for k, v in est.inner_state_.tensors().items()}
    (_, b), = batch.groups
    mse = nn.functional.mse_loss
    weights = msl_weights(3, epoch, 4) if epoch < 4 else np.array([0.0, 0.0, 1.0])
    total = 0.0
    for t in range(b.n_tasks):
        fasts = _hand_inner(net, params, rates, b.X_support[t], b.y_support[t], 3,
                            first_order=epoch < 2, loss_fn=mse)
        total = total + sum(float(w) * mse(F.forward(net, f, {}, b.X_query[t]), b.y_query[t])
                            for w, f in zip(weights, fasts) if w)
    total = total / b.n_tasks
    ref = torch.autograd.grad(total, [*params.values(), *rates.values()])
    torch.testing.assert_close(loss, total.detach(), rtol=1e-5, atol=1e-7)
    keys = [f"module_.{k}" for k in params] + [f"inner_state_.{k}" for k in rates]
    for k, g in zip(keys, ref):
        torch.testing.assert_close(grads[k], g, rtol=1e-4, atol=1e-7, msg=k)


def test_maml_plus_plus_per_step_batch_norm_against_a_hand_written_forward():
    X, y = _conv_pool()
    est = MAMLPlusPlusClassifier(**CONV, inner_steps=2, **{**FAST, "max_epochs": 0},
                                 learn_inner_lr=False, multi_step_loss_epochs=0,
                                 first_order_epochs=0, cosine_annealing=False).fit(X, y)
    bn = est.module_.features[1]
    assert bn.weight.shape == (2, 3) and "features.1.weight" in est.per_step_bn_
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], dtype=torch.float64))
        bn.bias.copy_(torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 0.5]], dtype=torch.float64))
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    mean = x.mean((0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((0, 2, 3), keepdim=True)
    norm = (x - mean) / torch.sqrt(var + 1e-5)
    for step in (0, 1, 5):
        row = min(step, 1)
        expected = norm * bn.weight[row].view(1, -1, 1, 1) + bn.bias[row].view(1, -1, 1, 1)
        with F.inner_step(step):
            torch.testing.assert_close(bn(x), expected)
    # the inner loop leaves the per-step weights alone; the outer loop trains them
    rule = est.inner_rule()
    assert not rule.selects("features.1.weight") and rule.selects("features.0.weight")
    batch = _batch(est, [(X[y < 3], y[y < 3]), (X[(y >= 3) & (y < 6)], y[(y >= 3) & (y < 6)])],
                   n=2)
    _, grads = est.get_meta_gradient(batch, "loop")
    assert grads["module_.features.1.weight"][1].abs().sum() > 0  # step 1's row is used
    adapted = est.adapt(X[:6], y[:6], adapt_steps=2)
    assert adapted.step_ == 1
    assert torch.equal(adapted.module_.features[1].weight, bn.weight)


# ------------------------------------------------------- engines agree (float64)


@pytest.mark.parametrize("Est, extra", [
    (MetaSGDClassifier, {}),
    (ANILClassifier, {}),
    (MAMLPlusPlusClassifier, dict(first_order_epochs=0, multi_step_loss_epochs=3)),
    (MAMLClassifier, {}),
])
def test_vmap_equals_loop_in_float64_second_order_with_batch_norm(Est, extra):
    X, y = _conv_pool()
    est = Est(**CONV, inner_steps=2, inner_lr=0.3, **extra, **{**FAST, "max_epochs": 0}).fit(X, y)
    tasks = [(X[(y >= a) & (y < a + 3)], y[(y >= a) & (y < a + 3)]) for a in (0, 3)]
    batch = _batch(est, tasks, n=2)
    lv, gv = est.get_meta_gradient(batch, "vmap")
    ll, gl = est.get_meta_gradient(batch, "loop")
    torch.testing.assert_close(lv, ll, rtol=1e-10, atol=1e-12)
    for k in gl:
        torch.testing.assert_close(gv[k], gl[k], rtol=1e-8, atol=1e-10, msg=k)


# --------------------------------------------------------------------- R2-D2


def test_r2d2_head_is_the_ridge_solution_on_the_features(sinusoid_tasks):
    est = _initialized(R2D2Regressor, sinusoid_tasks, k_shot=10, alpha=0.3, prior="zero",
                       module__hidden=(8, 8))
    X, y = sinusoid_tasks[0]
    adapted = est.adapt(X[:10], y[:10])
    net = est.module_
    with torch.no_grad():
        feats = net.layers[:4](torch.as_tensor(X[:10])).double().numpy()
    Z = np.hstack([feats, np.ones((10, 1))])
    W = np.linalg.solve(Z.T @ Z + 0.3 * np.eye(Z.shape[1]), Z.T @ y[:10, None])  # n > d + 1
    np.testing.assert_allclose(adapted.module_.layers[4].weight.numpy(), W[:-1].T, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(adapted.module_.layers[4].bias.numpy(), W[-1], rtol=1e-4,
                               atol=1e-5)
    for name in ("layers.0.weight", "layers.2.bias"):  # the body is untouched
        assert torch.equal(dict(adapted.module_.named_parameters())[name],
                           dict(net.named_parameters())[name])


@pytest.mark.parametrize("hidden", [(8,), (32,)])  # n > d + 1 and n <= d + 1 (Woodbury)
def test_r2d2_meta_gradient_matches_hand_written_and_engines_agree(hidden, sinusoid_tasks):
    est = _initialized(R2D2Regressor, sinusoid_tasks, k_shot=10, alpha=0.5, module=DoubleMLP,
                       module__hidden=hidden, prior="zero")
    batch = _batch(est, sinusoid_tasks, n=4)
    lv, gv = est.get_meta_gradient(batch, "vmap")
    ll, gl = est.get_meta_gradient(batch, "loop")
    net = est.module_
    params = {k: v.detach().clone().requires_grad_() for k, v in net.named_parameters()}
    log_alpha = est.inner_state_.tensors()["layers.2.log_alpha"].detach().clone() \
        .requires_grad_()
    (_, b), = batch.groups
    total = 0.0
    for t in range(b.n_tasks):
        def body(X):
            return F.forward(net.layers[:2], {k[7:]: v for k, v in params.items()
                                              if k.startswith("layers.0")}, {}, X)
        Z = torch.cat([body(b.X_support[t]), torch.ones(10, 1, dtype=torch.float64)], 1)
        A = Z.T @ Z + log_alpha.exp() * torch.eye(Z.shape[1], dtype=torch.float64)
        W = torch.linalg.inv(A) @ Z.T @ b.y_support[t]
        Zq = torch.cat([body(b.X_query[t]), torch.ones(len(b.X_query[t]), 1,
                                                       dtype=torch.float64)], 1)
        pred = Zq @ W
        total = total + ((pred - b.y_query[t]) ** 2).mean()
    total = total / b.n_tasks
    ref = torch.autograd.grad(total, [params["layers.0.weight"], log_alpha])
    for loss, grads in ((lv, gv), (ll, gl)):
        torch.testing.assert_close(loss, total.detach(), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(grads["module_.layers.0.weight"], ref[0], rtol=1e-7,
                                   atol=1e-10)
        torch.testing.assert_close(grads["inner_state_.layers.2.log_alpha"], ref[1], rtol=1e-7,
                                   atol=1e-10)
    assert gv["module_.layers.2.weight"].abs().sum() == 0  # the head is solved, not learned


def test_r2d2_learned_prior_shrinks_toward_the_meta_learned_head(sinusoid_tasks):
    est = _initialized(R2D2Regressor, sinusoid_tasks, k_shot=10, alpha=0.3, prior="learned",
                       module__hidden=(8, 8))
    with torch.no_grad():  # a head far from zero, so that the prior matters
        est.module_.layers[4].weight.fill_(2.0)
        est.module_.layers[4].bias.fill_(-1.0)
    X, y = sinusoid_tasks[0]
    net = est.module_
    with torch.no_grad():
        feats = net.layers[:4](torch.as_tensor(X[:10])).double().numpy()
    Z = np.hstack([feats, np.ones((10, 1))])
    W0 = np.vstack([net.layers[4].weight.detach().double().numpy().T, [[-1.0]]])
    W = W0 + np.linalg.solve(Z.T @ Z + 0.3 * np.eye(Z.shape[1]), Z.T @ (y[:10, None] - Z @ W0))
    for support in (10, 3):  # n > d + 1, and the Woodbury form (n <= d + 1)
        Zs = Z[:support]
        if support == 3:
            W = W0 + Zs.T @ np.linalg.solve(Zs @ Zs.T + 0.3 * np.eye(3),
                                            y[:3, None] - Zs @ W0)
        adapted = est.adapt(X[:support], y[:support])
        np.testing.assert_allclose(adapted.module_.layers[4].weight.numpy(), W[:-1].T,
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(adapted.module_.layers[4].bias.numpy(), W[-1], rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize("engine", ["vmap", "loop", "batched"])
def test_r2d2_learned_prior_meta_gradient_reaches_the_head(engine, sinusoid_tasks):
    est = _initialized(R2D2Regressor, sinusoid_tasks, k_shot=10, alpha=0.5, module=DoubleMLP,
                       module__hidden=(8,), prior="learned")
    batch = _batch(est, sinusoid_tasks, n=4)
    loss, grads = est.get_meta_gradient(batch, engine)
    ref_loss, ref = est.get_meta_gradient(batch, "loop")
    torch.testing.assert_close(loss, ref_loss, rtol=1e-9, atol=1e-12)
    for k in ref:
        torch.testing.assert_close(grads[k], ref[k], rtol=1e-7, atol=1e-10, msg=k)
    assert grads["module_.layers.2.weight"].abs().sum() > 0  # the prior mean is learned


def test_ridge_head_prior_is_checked(sinusoid_tasks):
    with pytest.raises(ValueError, match="prior must be 'zero' or 'learned'"):
        F.ridge_head("head", prior="mean")
    with pytest.raises(ValueError, match="prior='learned' is for regression"):
        F.ridge_head("head", classification=True, prior="learned")
    with pytest.raises(ValueError, match="prior"):
        R2D2Regressor(prior="mean", **FAST).fit(sinusoid_tasks)


def test_r2d2_classifier_adapts_to_any_number_of_classes_and_saves(pool, tmp_path):
    X, y = pool
    clf = R2D2Classifier(n_way=3, k_shot=2, n_query=3, n_episodes=40, **FAST).fit(X, y)
    assert set(clf.inner_state_.tensors()) == {"layers.4.log_alpha", "layers.4.log_scale"}
    mask = y < 7
    adapted = clf.adapt(X[mask][::2], y[mask][::2])  # 7 classes with n_way=3
    assert adapted.classes_.tolist() == list(range(7))
    proba = adapted.predict_proba(X[mask][1::2])
    assert proba.shape == (proba.shape[0], 7)
    assert (adapted.predict(X[mask][1::2]) == y[mask][1::2]).mean() > 0.5
    adapted.save(tmp_path / "r2d2.skmeta")
    np.testing.assert_array_equal(skmeta.load(tmp_path / "r2d2.skmeta").predict_proba(X[:5]),
                                  adapted.predict_proba(X[:5]))
    assert 0 <= clf.score([(X[y < 4], y[y < 4])]) <= 1
    with pytest.raises(ValueError, match="closed form"):
        clf.adapt(X[:6], y[:6], inner_lr=0.1)


# ------------------------------------------------- query sets of different lengths


def _uneven_tasks(classification=False, seed=0):
    rng = np.random.default_rng(seed)
    tasks = []
    for t in range(9):
        n = 8 + 3 * (t % 4)  # 8, 11, 14, 17 examples
        X = rng.normal(size=(n, 3))
        y = (np.arange(n) % 3) if classification else X @ rng.normal(size=3) + rng.normal()
        tasks.append((X, y))
    return tasks


@pytest.mark.parametrize("Est", [MAMLRegressor, MetaSGDRegressor, ANILRegressor,
                                 MAMLPlusPlusRegressor, R2D2Regressor, skmeta.ReptileRegressor,
                                 skmeta.PretrainedRegressor, skmeta.ALPaCARegressor,
                                 MAMLClassifier, R2D2Classifier])
@pytest.mark.parametrize("engine", ["vmap", "loop", "batched"])
def test_padded_query_sets_give_the_numbers_of_one_group_per_length(Est, engine):
    classification = Est._classification
    tasks = _uneven_tasks(classification)
    kw = dict(n_way=3, k_shot=1) if classification else dict(k_shot=4)
    est = Est(module=DoubleMLP, inner_steps=2, **kw, **{**FAST, "max_epochs": 0}).fit(tasks)
    assert est._pads_queries()
    seq = as_tasks(tasks, classification=classification)
    padded = est.get_meta_batch(seq, np.arange(9), np.random.default_rng(1), training=True)
    assert len(padded.groups) == 1 and padded.groups[0][1].query_mask is not None
    rng = np.random.default_rng(1)
    from skmeta.data.metabatch import make_meta_batch
    plain = make_meta_batch(seq, np.arange(9), rng, k_shot=est.k_shot, n_query=None,
                            classification=classification, encode=est.get_targets().encode,
                            to_tensor=est._to_tensor, training=True)
    assert len(plain.groups) == 4
    lp, gp = est.get_meta_gradient(padded, engine)
    lr, gr = est.get_meta_gradient(plain, engine)
    torch.testing.assert_close(lp, lr, rtol=1e-10, atol=1e-12)
    for k in gr:
        torch.testing.assert_close(gp[k], gr[k], rtol=1e-8, atol=1e-12, msg=k)
    if not isinstance(est, skmeta.PretrainedRegressor):  # scores: per task, as without padding
        scores = est.score_tasks(tasks)
        assert scores.shape == (9,) and np.isfinite(scores).all()


def test_no_padding_without_a_maskable_loss_or_the_algorithms_consent():
    tasks = _uneven_tasks()
    est = MAMLRegressor(criterion=nn.L1Loss, k_shot=4, **FAST).fit(tasks)
    assert not est._pads_queries()
    batch = est.get_meta_batch(as_tasks(tasks, classification=False), np.arange(9),
                               np.random.default_rng(0), training=True)
    assert len(batch.groups) == 4 and all(b.query_mask is None for _, b in batch.groups)

    class Unaware(MAMLRegressor):
        supports_query_mask = False

    assert not Unaware(k_shot=4, **FAST).fit(tasks)._pads_queries()
