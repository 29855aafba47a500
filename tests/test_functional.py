"""The pure functional core: meta-gradients, engines, Reptile's pseudo-gradient."""

import numpy as np
import pytest
import torch
from torch import nn

from skmeta import functional as F
from skmeta.algorithms.reptile import reptile_pseudo_gradient
from skmeta.modules import BatchNorm, ConvNet

MSE = nn.functional.mse_loss


def _learner(net, params, buffers=None, *, loss_fn=MSE, inner_lr=0.1, rule=None, state=None):
    return F.Learner(net, dict(params), dict(buffers or {}), loss_fn,
                     F.sgd(inner_lr) if rule is None else rule, dict(state or {}))


def maml_meta_gradient(net, params, buffers, batches, *, loss_fn, inner_lr, steps,
                       first_order=False, engine="vmap", chunk_size=None):
    """MAML's meta-gradient through the functional core (what MAMLRegressor computes)."""
    learner = _learner(net, params, buffers, loss_fn=loss_fn, inner_lr=inner_lr)

    def objective(task, engine):
        return F.query_loss(learner, task, steps=steps, first_order=first_order, engine=engine)

    return F.meta_gradient(objective, batches, learner.params, engine=engine,
                           chunk_size=chunk_size)


def adapt(net, params, buffers, batch, *, loss_fn, inner_lr, steps, engine="vmap"):
    return F.adapt(_learner(net, params, buffers, loss_fn=loss_fn, inner_lr=inner_lr), batch,
                   steps=steps, engine=engine)


def inner_loop(net, params, buffers, X, y, *, loss_fn, inner_lr, steps, first_order=False,
               engine="vmap"):
    learner = _learner(net, params, buffers, loss_fn=loss_fn, inner_lr=inner_lr)
    return learner.run_inner(X, y, steps=steps, first_order=first_order, engine=engine)[-1]


def _batch(n_tasks=4, n=6, d=3, out=1, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.TaskBatch(torch.randn(n_tasks, n, d, generator=g, dtype=dtype),
                       torch.randn(n_tasks, n, out, generator=g, dtype=dtype),
                       torch.randn(n_tasks, n + 2, d, generator=g, dtype=dtype),
                       torch.randn(n_tasks, n + 2, out, generator=g, dtype=dtype))


def _linear(d=3, out=1, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(d, out).double()


def _hand_written_meta_loss(W, b, batch, inner_lr, steps):
    """Second-order MAML meta-loss of a linear model with MSE, inner steps written by hand."""
    losses = []
    for t in range(batch.n_tasks):
        Xs, ys, Xq, yq = (a[t] for a in batch[:4])
        w, c = W, b
        for _ in range(steps):
            r = Xs @ w.T + c - ys  # (n, out)
            n = r.numel()
            gw = 2.0 / n * r.T @ Xs
            gc = 2.0 / n * r.sum(0)
            w, c = w - inner_lr * gw, c - inner_lr * gc
        losses.append(((Xq @ w.T + c - yq) ** 2).mean())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("engine", ["vmap", "loop", "batched"])
@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_matches_hand_written_reference(engine, steps):
    net = _linear()
    batch = _batch()
    params = dict(net.named_parameters())
    loss, grads = maml_meta_gradient(net, params, {}, [batch], loss_fn=MSE, inner_lr=0.1,
                                       steps=steps, engine=engine)
    W = net.weight.detach().clone().requires_grad_()
    b = net.bias.detach().clone().requires_grad_()
    ref = _hand_written_meta_loss(W, b, batch, 0.1, steps)
    gW, gb = torch.autograd.grad(ref, [W, b])
    assert torch.allclose(loss, ref.detach(), atol=1e-12)
    assert torch.allclose(grads["weight"], gW, atol=1e-10)
    assert torch.allclose(grads["bias"], gb, atol=1e-10)


@pytest.mark.parametrize("engine", ["vmap", "loop", "batched"])
def test_first_order_is_gradient_at_adapted_weights_and_differs(engine):
    net = _linear()
    batch = _batch()
    params = dict(net.named_parameters())
    _, fo = maml_meta_gradient(net, params, {}, [batch], loss_fn=MSE, inner_lr=0.3, steps=2,
                                 first_order=True, engine=engine)
    _, so = maml_meta_gradient(net, params, {}, [batch], loss_fn=MSE, inner_lr=0.3, steps=2,
                                 engine=engine)
    # reference: gradient of the query loss at the adapted weights, averaged over tasks
    fast = adapt(net, params, {}, batch, loss_fn=MSE, inner_lr=0.3, steps=2)
    ref = {k: torch.zeros_like(p) for k, p in params.items()}
    for t in range(batch.n_tasks):
        p_t = {k: v[t].clone().requires_grad_() for k, v in fast.items()}
        loss = MSE(F.forward(net, p_t, {}, batch.X_query[t]), batch.y_query[t])
        for k, g in zip(p_t, torch.autograd.grad(loss, list(p_t.values()))):
            ref[k] += g / batch.n_tasks
    for k in params:
        assert torch.allclose(fo[k], ref[k], atol=1e-12)
    assert not torch.allclose(fo["weight"], so["weight"], atol=1e-6)


def _finite_difference(net, params, buffers, batches, *, name, index, eps=1e-6, **kw):
    def meta_loss(delta):
        p = {k: v.detach().clone() for k, v in params.items()}
        p[name].view(-1)[index] += delta
        total, n = 0.0, 0
        for b in batches:
            for t in range(b.n_tasks):
                fast = inner_loop(net, {k: v.clone().requires_grad_() for k, v in p.items()},
                                    dict(buffers), b.X_support[t], b.y_support[t], engine="loop",
                                    **kw)
                total += kw["loss_fn"](F.forward(net, fast, buffers, b.X_query[t]),
                                       b.y_query[t]).item()
                n += 1
        return total / n

    return (meta_loss(eps) - meta_loss(-eps)) / (2 * eps)


def _conv_batch(n_tasks=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_tasks, 6, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n_tasks, 6), generator=g)
    Xq = torch.randn(n_tasks, 9, 1, 8, 8, generator=g, dtype=torch.float64)
    yq = torch.randint(0, 3, (n_tasks, 9), generator=g)
    return F.TaskBatch(X, y, Xq, yq)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_vmap_equals_loop_and_finite_differences_on_conv_net_with_batch_norm(first_order, steps):
    torch.manual_seed(0)
    net = ConvNet(n_outputs=3, n_filters=4, n_blocks=2, image_size=8).double()
    params, buffers = dict(net.named_parameters()), dict(net.named_buffers())
    batch = _conv_batch()
    ce = nn.functional.cross_entropy
    kw = dict(loss_fn=ce, inner_lr=0.5, steps=steps, first_order=first_order)
    lv, gv = maml_meta_gradient(net, params, buffers, [batch], engine="vmap", **kw)
    ll, gl = maml_meta_gradient(net, params, buffers, [batch], engine="loop", **kw)
    assert torch.allclose(lv, ll, atol=1e-12)
    for k in params:
        assert torch.allclose(gv[k], gl[k], atol=1e-10, rtol=1e-8), k
    if not first_order:
        # second order: compare with central finite differences of the meta-loss, including
        # a weight of the first convolution, which sits before the batch norm
        for name, index in [("features.0.weight", 5), ("features.1.weight", 1), ("head.bias", 2)]:
            fd = _finite_difference(net, params, buffers, [batch], name=name, index=index,
                                    loss_fn=ce, inner_lr=0.5, steps=steps)
            assert gv[name].reshape(-1)[index].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_chunked_vmap_equals_unchunked():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    params = dict(net.named_parameters())
    batch = _batch(n_tasks=7)
    l1, g1 = maml_meta_gradient(net, params, {}, [batch], loss_fn=MSE, inner_lr=0.1, steps=2)
    l2, g2 = maml_meta_gradient(net, params, {}, [batch], loss_fn=MSE, inner_lr=0.1, steps=2,
                                  chunk_size=3)
    assert torch.allclose(l1, l2)
    for k in g1:
        assert torch.allclose(g1[k], g2[k], atol=1e-12)


def test_groups_weight_every_task_equally():
    net = _linear()
    params = dict(net.named_parameters())
    a, b = _batch(n_tasks=2, n=4, seed=1), _batch(n_tasks=3, n=7, seed=2)
    loss, grads = maml_meta_gradient(net, params, {}, [a, b], loss_fn=MSE, inner_lr=0.1,
                                       steps=1)
    per_task = []
    for batch in (a, b):
        for t in range(batch.n_tasks):
            one = batch.slice(t, t + 1)
            per_task.append(maml_meta_gradient(net, params, {}, [one], loss_fn=MSE,
                                                 inner_lr=0.1, steps=1))
    assert torch.allclose(loss, torch.stack([p[0] for p in per_task]).mean())
    assert torch.allclose(grads["weight"], torch.stack([p[1]["weight"] for p in per_task]).mean(0))


@pytest.mark.parametrize("engine", ["vmap", "loop", "batched"])
def test_reptile_pseudo_gradient_points_from_adapted_weights_to_phi(engine):
    net = _linear()
    params = dict(net.named_parameters())
    batch = _batch()
    learner = _learner(net, params, inner_lr=0.05).detached()
    _, pseudo = F.mean_over_tasks(
        lambda task, engine: reptile_pseudo_gradient(learner, task, steps=4, engine=engine),
        [batch], engine=engine)
    # hand-written SGD from phi on each support set
    Ws = []
    for t in range(batch.n_tasks):
        w, c = net.weight.detach().clone(), net.bias.detach().clone()
        for _ in range(4):
            r = batch.X_support[t] @ w.T + c - batch.y_support[t]
            n = r.numel()
            w, c = w - 0.05 * 2 / n * r.T @ batch.X_support[t], c - 0.05 * 2 / n * r.sum(0)
        Ws.append(w)
    W_mean = torch.stack(Ws).mean(0)
    assert torch.allclose(pseudo["weight"], net.weight.detach() - W_mean, atol=1e-12)
    # an SGD step of size eps moves phi toward the adapted weights
    eps = 0.5
    new = net.weight.detach() - eps * pseudo["weight"]
    assert torch.allclose(new, net.weight.detach() + eps * (W_mean - net.weight.detach()))
    assert (new - W_mean).norm() < (net.weight.detach() - W_mean).norm()


def test_adapt_returns_detached_leaves_and_leaves_params_untouched():
    net = _linear()
    params = dict(net.named_parameters())
    before = {k: v.detach().clone() for k, v in params.items()}
    fast = adapt(net, params, {}, _batch(), loss_fn=MSE, inner_lr=0.1, steps=3)
    for k, v in fast.items():
        assert v.grad_fn is None and not v.requires_grad
        assert torch.equal(params[k], before[k])
    fast_loop = adapt(net, params, {}, _batch(), loss_fn=MSE, inner_lr=0.1, steps=3,
                      engine="loop")
    for k in fast:
        assert torch.allclose(fast[k], fast_loop[k], atol=1e-12)


def test_predict_engines_agree():
    net = _linear()
    params = dict(net.named_parameters())
    batch = _batch()
    learner = _learner(net, params)
    fast = F.adapt(learner, batch, steps=1)
    a = F.predict(learner, fast, batch.X_query, engine="vmap")
    b = F.predict(learner, fast, batch.X_query, engine="loop", chunk_size=2)
    assert torch.allclose(a, b)


def test_vmap_support_flags_native_norms():
    assert F.vmap_support(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)),
                          second_order=False)[0] is False
    bn_no_stats = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, track_running_stats=False))
    assert F.vmap_support(bn_no_stats, second_order=False)[0] is True
    ok, reason = F.vmap_support(bn_no_stats, second_order=True)
    assert not ok and "second-order" in reason
    assert F.vmap_support(nn.Sequential(nn.LayerNorm(2)), second_order=True)[0] is False
    assert F.vmap_support(nn.Sequential(nn.Linear(2, 2), BatchNorm(2)), second_order=True)[0]


def test_meta_gradient_needs_query_sets():
    net = _linear()
    batch = F.TaskBatch(*_batch()[:2])
    with pytest.raises(ValueError, match="query"):
        maml_meta_gradient(net, dict(net.named_parameters()), {}, [batch], loss_fn=MSE,
                             inner_lr=0.1, steps=1)


def test_unknown_engine_is_refused():
    net = _linear()
    with pytest.raises(ValueError, match="engine"):
        maml_meta_gradient(net, dict(net.named_parameters()), {}, [_batch()], loss_fn=MSE,
                             inner_lr=0.1, steps=1, engine="fast")


def test_float32_vmap_agrees_with_loop_on_sinusoid_mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                        nn.Linear(40, 1))
    params = dict(net.named_parameters())
    batch = _batch(n_tasks=25, n=10, d=1, dtype=torch.float32)
    lv, gv = maml_meta_gradient(net, params, {}, [batch], loss_fn=MSE, inner_lr=0.01, steps=1)
    ll, gl = maml_meta_gradient(net, params, {}, [batch], loss_fn=MSE, inner_lr=0.01, steps=1,
                                  engine="loop")
    assert abs(lv.item() - ll.item()) < 1e-5
    for k in gv:
        np.testing.assert_allclose(gv[k].numpy(), gl[k].numpy(), atol=1e-5, rtol=1e-4)
