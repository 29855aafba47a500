"""Bayesian linear regression in the functional core, and ALPaCA built on it."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import norm

import skmeta
from skmeta import ALPaCARegressor, R2D2Regressor
from skmeta import functional as F
from skmeta.data import as_tasks
from skmeta.modules import MLP, LinearFeatures

FAST = dict(max_epochs=1, verbose=0, random_state=0)


class DoubleMLP(MLP):
    """A float64 MLP, to compare computations to rounding error."""

    def __init__(self, in_features=None, n_outputs=None, **kwargs):
        super().__init__(in_features, n_outputs, **kwargs)
        self.double()


def _problem(n=7, d=4, m=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    Phi = torch.randn(n, d, generator=g, dtype=torch.float64)
    Y = torch.randn(n, m, generator=g, dtype=torch.float64)
    M0 = torch.randn(d, m, generator=g, dtype=torch.float64)
    L = torch.randn(d, d, generator=g, dtype=torch.float64).tril()
    L.diagonal().abs_().add_(0.5)
    return Phi, Y, M0, L


# --------------------------------------------------------------------------- the solver


@pytest.mark.parametrize("n", [3, 7])  # fewer and more rows than features
def test_posterior_is_the_textbook_conjugate_update(n):
    Phi, Y, M0, L = _problem(n=n)
    S0 = L @ L.T  # the prior covariance relative to the noise
    A = torch.linalg.inv(S0) + Phi.T @ Phi
    S = torch.linalg.inv(A)
    mean = S @ (torch.linalg.inv(S0) @ M0 + Phi.T @ Y)
    post = F.bayes_linear_posterior(Phi, Y, M0, L)
    torch.testing.assert_close(post.mean, mean, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(post.factor @ post.factor.T, S, rtol=1e-9, atol=1e-10)
    only_mean = F.bayes_linear_posterior(Phi, Y, M0, L, covariance=False)  # Woodbury if n < d
    assert only_mean.factor is None
    torch.testing.assert_close(only_mean.mean, mean, rtol=1e-9, atol=1e-10)


def test_posterior_predictive_and_likelihood_match_the_gaussian():
    Phi, Y, M0, L = _problem()
    post = F.bayes_linear_posterior(Phi, Y, M0, L)
    noise = torch.tensor([0.3, 2.0], dtype=torch.float64)
    new = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mean, var = F.bayes_linear_predict(post, new, noise)
    S = post.factor @ post.factor.T
    expected = noise * (1 + torch.einsum("nd,de,ne->n", new, S, new))[:, None]
    torch.testing.assert_close(mean, new @ post.mean)
    torch.testing.assert_close(var, expected)
    targets = torch.randn(5, 2, dtype=torch.float64)
    ll = F.bayes_linear_log_likelihood(post, new, targets, noise)
    ref = norm.logpdf(targets.numpy(), mean.numpy(), np.sqrt(var.numpy())).sum(1)
    np.testing.assert_allclose(ll.numpy(), ref, rtol=1e-10)


def test_posterior_ignores_masked_rows_and_maps_over_tasks():
    Phi, Y, M0, L = _problem(n=9)
    mask = torch.tensor([True] * 6 + [False] * 3)
    masked = F.bayes_linear_posterior(Phi, Y, M0, L, mask=mask)
    alone = F.bayes_linear_posterior(Phi[:6], Y[:6], M0, L)
    torch.testing.assert_close(masked.mean, alone.mean)
    torch.testing.assert_close(masked.factor @ masked.factor.T, alone.factor @ alone.factor.T)
    batched = F.bayes_linear_posterior(torch.stack([Phi, 2 * Phi]), torch.stack([Y, Y]), M0, L)
    vmapped = torch.func.vmap(lambda p, y: F.bayes_linear_posterior(p, y, M0, L).mean)(
        torch.stack([Phi, 2 * Phi]), torch.stack([Y, Y]))
    torch.testing.assert_close(batched.mean, vmapped)
    torch.testing.assert_close(batched.mean[0], F.bayes_linear_posterior(Phi, Y, M0, L).mean)


def test_low_rank_and_scalar_factors_are_priors_too():
    Phi, Y, M0, _ = _problem()
    U = torch.randn(4, 2, dtype=torch.float64)
    post = F.bayes_linear_posterior(Phi, Y, M0, U)  # a singular prior: moves within span(U)
    torch.testing.assert_close(post.factor @ post.factor.T,
                               U @ torch.linalg.inv(torch.eye(2, dtype=torch.float64)
                                                    + U.T @ Phi.T @ Phi @ U) @ U.T)
    ridge = F.bayes_linear_posterior(Phi, Y, M0, torch.tensor(0.5, dtype=torch.float64))
    alpha = 4.0  # s = 0.5: the ridge penalty 1 / s^2
    ref = M0 + torch.linalg.solve(Phi.T @ Phi + alpha * torch.eye(4, dtype=torch.float64),
                                  Phi.T @ (Y - Phi @ M0))
    torch.testing.assert_close(ridge.mean, ref)


def test_bayes_head_checks_its_arguments():
    with pytest.raises(ValueError, match="covariance must be one of"):
        F.bayes_head("head", covariance="dense")
    with pytest.raises(ValueError, match="rank must be at least 1"):
        F.bayes_head("head", covariance="lowrank", rank=0)
    with pytest.raises(ValueError, match="noise_var must be positive"):
        F.bayes_head("head", noise_var=0.0)
    with pytest.raises(ValueError, match="covariance=True"):
        F.bayes_linear_predict(F.BayesLinearPosterior(torch.zeros(2, 1), None),
                               torch.zeros(1, 2), torch.tensor(1.0))


# ----------------------------------------------------------------------------- ALPaCA


def _initialized(tasks, **kw):
    return ALPaCARegressor(**{**FAST, "max_epochs": 0, **kw}).fit(tasks)


def _batch(est, tasks, n=6):
    return est.get_meta_batch(as_tasks(tasks, classification=False), np.arange(n),
                              np.random.default_rng(0), training=True)


@pytest.mark.parametrize("covariance", ["full", "diag", "lowrank", "isotropic"])
def test_alpaca_objective_is_the_posterior_predictive_nll_on_every_engine(covariance,
                                                                          sinusoid_tasks):
    est = _initialized(sinusoid_tasks, k_shot=5, module=DoubleMLP, module__hidden=(6,),
                       covariance=covariance, rank=2)
    with torch.no_grad():  # a prior that is not the initial one
        for t in est.inner_state_.parameters():
            t.add_(0.1 * torch.randn_like(t))
    batch = _batch(est, sinusoid_tasks)
    losses = {e: est.get_meta_gradient(batch, e) for e in ("vmap", "loop", "batched")}
    learner = est.learner().detached()
    M0, L, noise = F.bayes_head_prior(learner)
    net = est.module_
    (_, b), = batch.groups
    total = 0.0
    for t in range(b.n_tasks):
        def feats(X):
            with torch.no_grad():
                Z = net.layers[:2](X)
            return torch.cat([Z, torch.ones(len(Z), 1, dtype=Z.dtype)], 1).numpy()
        Zs, Zq = feats(b.X_support[t]), feats(b.X_query[t])
        S0 = (L ** 2 * torch.eye(7, dtype=torch.float64) if L.dim() == 0 else L @ L.T).numpy()
        cov = S0 - S0 @ Zs.T @ np.linalg.solve(Zs @ S0 @ Zs.T + np.eye(len(Zs)), Zs @ S0)
        mean = M0.numpy() + S0 @ Zs.T @ np.linalg.solve(
            Zs @ S0 @ Zs.T + np.eye(len(Zs)), b.y_support[t].numpy() - Zs @ M0.numpy())
        var = noise.item() * (1 + np.einsum("nd,de,ne->n", Zq, cov, Zq))
        total += -norm.logpdf(b.y_query[t].numpy().ravel(), (Zq @ mean).ravel(),
                              np.sqrt(var)).mean()
    ref_loss, ref_grads = losses["loop"]
    np.testing.assert_allclose(float(ref_loss), total / b.n_tasks, rtol=1e-9)
    for engine in ("vmap", "batched"):
        loss, grads = losses[engine]
        torch.testing.assert_close(loss, ref_loss, rtol=1e-9, atol=1e-12)
        for k in ref_grads:
            torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-7, atol=1e-10, msg=k)
    assert ref_grads["module_.layers.2.weight"].abs().sum() > 0  # the prior mean is learned
    assert all(ref_grads[f"inner_state_.{k}"].abs().sum() > 0
               for k in est.inner_state_.tensors())


def test_alpaca_adapts_to_the_posterior_and_keeps_it_through_pickle_and_save(sinusoid_tasks,
                                                                            tmp_path):
    est = ALPaCARegressor(k_shot=5, module__hidden=(8,), covariance="lowrank",
                          **FAST).fit(sinusoid_tasks)
    X, y = sinusoid_tasks[0]
    adapted = est.adapt(X[:5], y[:5])
    learner = est.learner().detached()
    post, noise = F.bayes_head_posterior(learner, torch.as_tensor(X[:5]),
                                         torch.as_tensor(y[:5, None]))
    Zq = F.bayes_head_features(learner, torch.as_tensor(X[5:]))
    mean, var = F.bayes_linear_predict(post, Zq, noise)
    got_mean, got_std = adapted.predict(X[5:], return_std=True)
    np.testing.assert_allclose(got_mean, mean.numpy().ravel(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_std, np.sqrt(var.numpy().ravel()), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(adapted.predict(X[5:]), got_mean)
    for copy in (pickle.loads(pickle.dumps(adapted)), None):
        if copy is None:
            adapted.save(tmp_path / "alpaca.skmeta")
            copy = skmeta.load(tmp_path / "alpaca.skmeta")
        np.testing.assert_allclose(copy.predict(X[5:], return_std=True)[1], got_std)
    y_pred, y_pis = adapted.predict_interval(X[5:], confidence_level=0.9)
    assert y_pis.shape == (15, 2, 1)
    np.testing.assert_allclose(y_pis[:, 1, 0] - y_pred, norm.ppf(0.95) * got_std, rtol=1e-6)
    est.save(tmp_path / "meta.skmeta")
    again = skmeta.load(tmp_path / "meta.skmeta").adapt(X[:5], y[:5])
    np.testing.assert_allclose(again.predict(X[5:], return_std=True)[1], got_std, rtol=1e-6)
    unadapted = est.adapt(X[:5], y[:5], adapt_steps=0)  # the prior mean: no posterior stored
    with pytest.raises(ValueError, match="no predictive distribution"):
        unadapted.predict(X, return_std=True)


def test_alpaca_with_several_targets_and_its_errors(sinusoid_tasks):
    rng = np.random.default_rng(0)
    tasks = [(X, np.column_stack([y, 10 * y + rng.normal(size=len(y))]))
             for X, y in sinusoid_tasks[:20]]
    est = ALPaCARegressor(k_shot=5, module__hidden=(8,), covariance="diag", **FAST).fit(tasks)
    assert est.inner_state_.tensors()["layers.2.log_noise"].shape == (2,)
    mean, std = est.adapt(*tasks[0]).predict(tasks[1][0], return_std=True)
    assert mean.shape == std.shape == (20, 2)
    with pytest.raises(ValueError, match="closed form"):
        est.adapt(*tasks[0], inner_lr=0.1)
    with pytest.raises(ValueError, match="must name an nn.Linear"):
        ALPaCARegressor(head="layers.1", **FAST).fit(sinusoid_tasks)
    with pytest.raises(ValueError, match="covariance"):
        ALPaCARegressor(covariance="dense", **FAST).fit(sinusoid_tasks)
    with pytest.raises(ValueError, match="predict_interval|no predictive"):
        R2D2Regressor(k_shot=5, **FAST).fit(sinusoid_tasks).adapt(
            *sinusoid_tasks[0]).predict(sinusoid_tasks[0][0], return_std=True)


def test_r2d2_learned_prior_is_alpaca_with_an_isotropic_prior_and_mse(sinusoid_tasks):
    kw = dict(k_shot=5, module=DoubleMLP, module__hidden=(8,))
    r2d2 = R2D2Regressor(alpha=4.0, prior="learned", **kw, **{**FAST, "max_epochs": 0})
    alpaca = ALPaCARegressor(covariance="isotropic", prior_scale=0.5, objective="mse", **kw,
                             **{**FAST, "max_epochs": 0})
    r2d2.fit(sinusoid_tasks)
    alpaca.fit(sinusoid_tasks)
    X, y = sinusoid_tasks[3]
    np.testing.assert_allclose(alpaca.adapt(X[:5], y[:5]).predict(X),
                               r2d2.adapt(X[:5], y[:5]).predict(X), rtol=1e-10)
    batch = _batch(r2d2, sinusoid_tasks)
    np.testing.assert_allclose(float(alpaca.get_meta_gradient(batch, "loop")[0]),
                               float(r2d2.get_meta_gradient(batch, "loop")[0]), rtol=1e-10)


# ------------------------------------------------------------- it contains the mixed model


def _random_slopes(n_groups, n_rows, seed):
    rng = np.random.default_rng(seed)
    psi = np.array([[1.0, 0.3], [0.3, 0.5]])
    b = rng.multivariate_normal([1.0, 2.0], psi, size=n_groups)
    x = rng.normal(size=(n_groups, n_rows))
    y = b[:, :1] + b[:, 1:] * x + rng.normal(scale=0.5, size=(n_groups, n_rows))
    return x, y


@pytest.mark.slow
def test_alpaca_on_linear_features_is_the_random_slope_mixed_model():
    pd = pytest.importorskip("pandas")
    smf = pytest.importorskip("statsmodels.formula.api")
    x, y = _random_slopes(300, 10, seed=0)
    df = pd.DataFrame({"x": x.ravel(), "y": y.ravel(), "g": np.repeat(np.arange(300), 10)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reml = smf.mixedlm("y ~ x", df, groups="g", re_formula="~x").fit(reml=True)
    est = ALPaCARegressor(module=LinearFeatures, k_shot=5, batch_size=50, lr=0.03,
                          max_epochs=100, verbose=0, random_state=0)
    est.fit([(x[g, :, None], y[g]) for g in range(300)])
    prior = est.get_prior()
    noise = prior["noise_var"][0]
    # the fixed effects, random-effects covariance and residual variance: REML's, up to the
    # sampling error of 300 groups (ALPaCA maximises a different likelihood of the same model)
    np.testing.assert_allclose(prior["mean"].ravel(), reml.fe_params.values, atol=0.15)
    np.testing.assert_allclose(noise * prior["covariance"], reml.cov_re.values, atol=0.15)
    assert abs(noise / reml.scale - 1) < 0.1
    # new groups: 5 rows to adapt on, 20 to predict; the prediction is the BLUP
    xn, yn = _random_slopes(200, 25, seed=1)
    adapted = est.adapt_tasks([(xn[g, :5, None], yn[g, :5]) for g in range(200)])
    beta, psi, s2 = reml.fe_params.values, reml.cov_re.values, reml.scale
    diffs, covered = [], []
    for g, model in enumerate(adapted):
        Zs = np.column_stack([np.ones(5), xn[g, :5]])
        Zq = np.column_stack([np.ones(20), xn[g, 5:]])
        blup = psi @ Zs.T @ np.linalg.solve(Zs @ psi @ Zs.T + s2 * np.eye(5),
                                            yn[g, :5] - Zs @ beta)
        mean, std = model.predict(xn[g, 5:, None], return_std=True)
        diffs.append(mean - Zq @ (beta + blup))
        covered.append(np.abs(yn[g, 5:] - mean) <= norm.ppf(0.95) * std)
    # within a tenth of the residual standard deviation (0.5) on average
    assert np.sqrt(np.mean(np.square(diffs))) < 0.1 * np.sqrt(s2)
    assert 0.87 <= np.mean(covered) <= 0.93  # mean +- 1.645 std covers about 90%
