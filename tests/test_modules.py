"""The networks of skmeta.modules: MLP, ConvNet and the exact-under-vmap BatchNorm."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skmeta import EpisodeSampler, MAMLClassifier
from skmeta.modules import MLP, BatchNorm, ConvNet

# ---------------------------------------------------------------------------
# EpisodeSampler


def test_mlp_shapes_and_flattening():
    net = MLP(in_features=12, n_outputs=3, hidden=(8,))
    assert net(torch.zeros(5, 12)).shape == (5, 3)
    assert net(torch.zeros(5, 3, 4)).shape == (5, 3)  # flattened
    assert MLP(in_features=2)(torch.zeros(4, 2)).shape == (4, 1)


def test_mlp_without_in_features_raises():
    with pytest.raises(ValueError, match="in_features"):
        MLP()


def test_batchnorm_uses_batch_statistics():
    torch.manual_seed(0)
    bn = BatchNorm(3)
    x = torch.randn(16, 3, 5, 5) * torch.tensor([1.0, 4.0, 0.5]).view(1, 3, 1, 1) + 7.0
    out = bn(x)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=(0, 2, 3), unbiased=False), torch.ones(3),
                               atol=1e-3, rtol=0)
    # no running statistics: eval mode normalises with the batch too
    bn.eval()
    torch.testing.assert_close(bn(x), out)
    assert list(bn.buffers()) == []


@pytest.mark.parametrize("shape", [(10, 4), (6, 4, 3, 3), (5, 4, 7)])
def test_batchnorm_matches_torch_float64(shape):
    torch.manual_seed(1)
    bn = BatchNorm(4).double()
    with torch.no_grad():
        bn.weight.copy_(torch.randn(4, dtype=torch.float64))
        bn.bias.copy_(torch.randn(4, dtype=torch.float64))
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 1
    expected = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    torch.testing.assert_close(bn(x), expected, rtol=1e-10, atol=1e-10)


def test_batchnorm_without_affine():
    bn = BatchNorm(2, affine=False)
    assert bn.weight is None and bn.bias is None
    assert list(bn.parameters()) == []
    x = torch.randn(8, 2, dtype=torch.float64)
    expected = F.batch_norm(x, None, None, training=True, eps=bn.eps)
    torch.testing.assert_close(bn(x), expected)


@pytest.mark.parametrize("image_size, n_blocks", [(28, 4), (16, 4), (8, 3), (4, 2), (2, 1)])
def test_convnet_output_shapes(image_size, n_blocks):
    net = ConvNet(n_outputs=7, n_filters=4, n_blocks=n_blocks, image_size=image_size)
    assert net(torch.zeros(3, 1, image_size, image_size)).shape == (3, 7)


def test_convnet_defaults_and_channels():
    net = ConvNet(n_filters=8)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 5)  # 5 outputs without n_outputs
    assert net.head.in_features == 8  # 28 -> 14 -> 7 -> 3 -> 1
    rgb = ConvNet(n_outputs=3, in_channels=3, n_filters=4, image_size=32)
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert sum(isinstance(m, BatchNorm) for m in net.modules()) == 4


def test_convnet_image_too_small_raises():
    with pytest.raises(ValueError, match="too small"):
        ConvNet(n_outputs=2, n_filters=4, image_size=8)  # 4 poolings of 8 pixels


# ---------------------------------------------------------------------------
# end to end


def test_maml_convnet_on_random_images():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(8), 6)
    X = rng.random((len(y), 1, 28, 28)).astype(np.float32)
    tasks = EpisodeSampler(X, y, n_way=3, k_shot=1, n_query=2, n_episodes=4, random_state=0)
    clf = MAMLClassifier(module=ConvNet, module__n_filters=8, n_way=3, k_shot=1, n_query=2,
                         batch_size=2, inner_lr=0.1, max_epochs=1, verbose=0, random_state=0)
    clf.fit(tasks)
    assert len(clf.history_[-1, "batches"]) == 2  # 2 meta-batches of 2 tasks
    assert clf.module_.head.out_features == 3
    scores = clf.score_tasks(tasks)
    assert scores.shape == (4,)
    assert ((scores >= 0) & (scores <= 1)).all()
    adapted = clf.adapt(X[:3], np.array(["a", "b", "c"]))
    assert set(adapted.predict(X[:5])) <= {"a", "b", "c"}
