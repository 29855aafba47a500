"""The batched engine on the networks users write: traced forwards, the layer registry,
fallback with a reason, and per-task functions that do not know their engine."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import skmeta
from skmeta import MAMLRegressor
from skmeta import functional as F
from skmeta.modules import BatchNorm, ConvNet

MSE = nn.functional.mse_loss


class UserNet(nn.Module):
    """The way most users write a network: their own class around an nn.Sequential."""

    def __init__(self, in_features=1, n_outputs=1):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, 8), nn.Tanh(), nn.Linear(8, n_outputs))

    def forward(self, X):
        return self.body(X)


class Residual(nn.Module):
    def __init__(self, d=3):
        super().__init__()
        self.inp = nn.Linear(d, 6)
        self.block = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6))
        self.norm = nn.LayerNorm(6)
        self.out = nn.Linear(6, 1)

    def forward(self, X):
        h = torch.tanh(self.inp(X))
        h = self.norm(h + self.block(h))  # a residual addition
        return self.out(nn.functional.relu(h))


class Concat(nn.Module):
    def __init__(self, d=3):
        super().__init__()
        self.a, self.b = nn.Linear(d, 4), nn.Linear(d, 2)
        self.scale = BatchNorm(6)
        self.out = nn.Linear(6, 1)

    def forward(self, X):
        h = torch.cat([self.a(X), torch.sigmoid(self.b(X))], dim=1)
        h = self.scale(h).view(h.size(0), -1)
        return self.out(h.reshape(-1, 6)) * 0.5 + 1.0


class Pixels(nn.Module):
    """A small convolutional network with a flatten written in forward."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(3 * 2 * 2, 1)

    def forward(self, X):
        h = self.pool(torch.relu(self.conv(X)))
        return self.head(h.flatten(1))


def _batch(shape, n_tasks=3, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.TaskBatch(torch.randn(n_tasks, n, *shape, generator=g, dtype=torch.float64),
                       torch.randn(n_tasks, n, 1, generator=g, dtype=torch.float64),
                       torch.randn(n_tasks, n + 1, *shape, generator=g, dtype=torch.float64),
                       torch.randn(n_tasks, n + 1, 1, generator=g, dtype=torch.float64))


def _meta_gradient(net, batch, engine, *, first_order=False, rule=None, head=None):
    learner = F.Learner(net, dict(net.named_parameters()), {}, MSE,
                        rule or F.sgd(0.1), head=head)
    return F.meta_gradient(
        lambda learner, task: F.query_loss(learner, task, steps=2, first_order=first_order),
        [batch], learner.params, engine=engine, learner=learner)


NETS = {"user class": (UserNet, (1,)), "residual + LayerNorm": (Residual, (3,)),
        "concat + BatchNorm + view": (Concat, (3,)), "conv + pool + flatten": (Pixels, (1, 4, 4)),
        "ConvNet": (lambda: ConvNet(1, n_filters=2, n_blocks=2, image_size=4), (1, 4, 4))}


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("first_order", [False, True])
def test_batched_engine_is_exact_against_the_loop_on_traced_networks(name, first_order):
    make, shape = NETS[name]
    torch.manual_seed(0)
    net = make().double()
    assert F.batchable(net) == (True, "")
    batch = _batch(shape)
    loss_l, ref = _meta_gradient(net, batch, "loop", first_order=first_order)
    loss_b, got = _meta_gradient(net, batch, "batched", first_order=first_order)
    torch.testing.assert_close(loss_b, loss_l, rtol=1e-10, atol=1e-12)
    for k in ref:
        assert ref[k].abs().sum() > 0, k
        torch.testing.assert_close(got[k], ref[k], rtol=1e-10, atol=1e-12, msg=k)


def test_head_only_inner_loop_reaches_the_head_of_a_traced_network():
    torch.manual_seed(0)
    net = Residual().double()
    batch = _batch((3,))
    rule = F.only("out", F.sgd(0.1))
    _, ref = _meta_gradient(net, batch, "loop", rule=rule, head="out")
    _, got = _meta_gradient(net, batch, "batched", rule=rule, head="out")
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-10, atol=1e-12, msg=k)


def test_networks_the_engine_cannot_run_say_why_in_one_line():
    class Branchy(nn.Module):  # control flow on the data: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, X):
            return self.lin(X) if X.sum() > 0 else -self.lin(X)

    class Direct(nn.Module):  # a parameter used outside a layer
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2, 1))

        def forward(self, X):
            return X @ self.w

    cases = {nn.Sequential(nn.Linear(2, 2), nn.GRU(2, 1)): "layer '1' (GRU) has no batched",
             Branchy(): "cannot be traced with torch.fx",
             Direct(): "reads the tensor 'w' directly",
             nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)): "tracks running statistics",
             nn.Sequential(nn.Conv1d(1, 1, 3, padding_mode="circular", padding=1)):
                 "padding_mode='circular'"}
    for net, why in cases.items():
        ok, reason = F.batchable(net)
        assert not ok and why in reason and "\n" not in reason, reason
    with pytest.raises(F.NotBatchable, match="GRU"):
        F.batched_forward(nn.Sequential(nn.GRU(2, 1)), {}, torch.zeros(1, 2, 2))


def test_registered_layers_run_and_registration_is_checked():
    class Scale(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.linspace(0.5, 1.5, d))

        def forward(self, X):
            return X * self.weight

    net = nn.Sequential(nn.Linear(2, 3), Scale(3), nn.Linear(3, 1)).double()
    assert not F.batchable(net)[0]  # Scale is traced through: it reads its tensor directly

    def batched_scale(layer, params, X):
        w = params["weight"]
        return X * (w if w.dim() == 1 else w[:, None, :])

    F.register_batched_layer(Scale, batched_scale)
    assert F.batched_layer(Scale(2)) is batched_scale
    assert F.batchable(net) == (True, "")
    batch = _batch((2,))
    _, ref = _meta_gradient(net, batch, "loop")
    _, got = _meta_gradient(net, batch, "batched")
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-10, atol=1e-12, msg=k)
    with pytest.raises(TypeError, match="layer_type must be a subclass"):
        F.register_batched_layer("Linear", batched_scale)
    with pytest.raises(TypeError, match="fn must be callable"):
        F.register_batched_layer(Scale, 3)

    class Overridden(nn.Linear):  # a subclass with its own forward is not the parent
        def forward(self, X):
            return super().forward(X) ** 2

    assert F.batched_layer(Overridden(2, 1)) is None


@pytest.mark.filterwarnings("ignore:There is a performance drop")
def test_estimator_falls_back_and_says_why(sinusoid_tasks, capsys):
    class Pairwise(nn.Module):
        def __init__(self, in_features=1, n_outputs=1):
            super().__init__()
            self.pair = nn.Bilinear(in_features, in_features, 4)
            self.out = nn.Linear(4, n_outputs)

        def forward(self, X):
            return self.out(torch.tanh(self.pair(X, X)))

    est = MAMLRegressor(module=Pairwise, k_shot=10, max_epochs=1, batch_size=4, verbose=1,
                        random_state=0).fit(sinusoid_tasks[:12])
    assert est.engine_["train"] in {"vmap", "loop"}
    assert est.engine_["batched"].startswith("not used: layer 'pair' (Bilinear) has no batched")
    out = capsys.readouterr().out
    assert "the batched engine cannot run this train work (layer 'pair' (Bilinear)" in out
    user = MAMLRegressor(module=UserNet, k_shot=10, max_epochs=1, batch_size=4,
                         random_state=0).fit(sinusoid_tasks[:12])
    assert user.engine_["train"] in {"batched", "loop"} and "batched" not in user.engine_


def test_user_network_fits_the_same_on_every_engine(sinusoid_tasks):
    class DoubleUserNet(UserNet):
        def __init__(self, in_features=1, n_outputs=1):
            super().__init__(in_features, n_outputs)
            self.double()

    states = []
    for engine in ("loop", "vmap", "batched"):
        est = MAMLRegressor(module=DoubleUserNet, k_shot=10, max_epochs=2, batch_size=4,
                            engine=engine, random_state=0).fit(sinusoid_tasks[:12])
        states.append(est.module_.state_dict())
    for other in states[1:]:
        for k, v in states[0].items():
            torch.testing.assert_close(other[k], v, rtol=1e-9, atol=1e-12, msg=k)


def test_per_task_functions_do_not_name_the_engine():
    batch = _batch((3,))
    torch.manual_seed(0)
    net = Residual().double()
    learner = F.Learner(net, dict(net.named_parameters()), {}, MSE, F.only("out", F.sgd(0.1)))

    def pooled_loss(learner, task):  # support and query rows together, one task's view
        X, y, mask = task.pooled()
        return learner.loss({}, X, y, mask=mask)

    def constant(learner, task):  # a value that is the same for every task
        return task.X_support.new_full((), 7.0)

    for fn in (pooled_loss, constant):
        outs = {e: torch.cat([o for _, o in F.map_tasks(fn, batch, engine=e, learner=learner)])
                for e in ("loop", "vmap", "batched")}
        assert outs["loop"].shape == (3,)
        for e in ("vmap", "batched"):
            torch.testing.assert_close(outs[e], outs["loop"], rtol=1e-12, atol=1e-12)
    merged = learner.bind("batched").merged({"out.weight": torch.zeros(3, 1, 6)})
    assert merged["out.weight"].shape == (3, 1, 6) and merged["inp.weight"].shape == (3, 6, 3)


def test_older_hook_form_still_runs_with_a_future_warning(sinusoid_tasks):
    class OldStyle(MAMLRegressor):
        def task_objective(self, learner, task, engine):
            return F.query_loss(learner, task, steps=1, engine=engine)

    with pytest.warns(FutureWarning, match="the engine argument is deprecated"):
        old = OldStyle(k_shot=10, max_epochs=1, batch_size=4, random_state=0,
                       engine="loop").fit(sinusoid_tasks[:8])
    assert old._batched("train", old.module_)[0] is False  # not declared: not batched
    assert not old._pads_queries()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = MAMLRegressor(k_shot=10, max_epochs=1, batch_size=4, random_state=0,
                            engine="loop").fit(sinusoid_tasks[:8])
    for a, b in zip(old.module_.parameters(), new.module_.parameters()):
        assert torch.equal(a, b)
    assert isinstance(skmeta.MAMLRegressor.supports_batched, type(None))


def test_batched_forward_matches_the_module_on_shared_parameters():
    torch.manual_seed(0)
    for make, shape in NETS.values():
        net = make().double().eval()
        X = torch.randn(2, 5, *shape, dtype=torch.float64)
        with torch.no_grad():
            got = F.batched_forward(net, dict(net.named_parameters()), X)
            want = torch.stack([net(x) for x in X])
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


def test_a_network_found_unbatchable_while_running_goes_to_the_next_engine():
    from skmeta.estimator.engines import EngineChooser

    notes = []
    chooser = EngineChooser("auto", "cpu", notes.append)
    ran = []

    def fn(engine):
        ran.append(engine)
        if engine == "batched":
            raise F.NotBatchable("forward indexes a tensor with a tensor")
        return engine

    net = nn.Linear(2, 1)
    assert chooser.run("train", net, 4, fn, batched=lambda: (True, "")) == "vmap"
    assert ran == ["batched", "vmap"]
    assert chooser.summary()["batched"] == "not used: forward indexes a tensor with a tensor"
    assert any("forward indexes a tensor with a tensor" in n for n in notes)
    for _ in range(4):  # never tried again
        chooser.run("train", net, 4, fn, batched=lambda: (True, ""))
    assert "batched" not in ran[2:]
    with pytest.raises(F.NotBatchable):  # an explicit engine="batched" is not second-guessed
        EngineChooser("batched", "cpu").run("train", net, 4, fn, batched=lambda: (True, ""))
