import math

import pytest
import torch

from imgsynth.errors import ConfigError
from imgsynth.training import losses as L


def test_values_at_zero_logits():
    z = torch.zeros(4, 1)
    assert L.d_loss("vanilla", z, z).item() == pytest.approx(2 * math.log(2))
    assert L.d_loss("nonsaturating", z, z).item() == pytest.approx(2 * math.log(2))
    assert L.g_loss("nonsaturating", z).item() == pytest.approx(math.log(2))
    assert L.g_loss("vanilla", z).item() == pytest.approx(-math.log(2))
    assert L.d_loss("lsgan", z, z).item() == pytest.approx(0.5)
    assert L.g_loss("lsgan", z).item() == pytest.approx(0.5)
    assert L.d_loss("hinge", z, z).item() == pytest.approx(2.0)
    assert L.g_loss("hinge", z).item() == pytest.approx(0.0)


def test_wasserstein_and_hinge_values():
    real, fake = torch.tensor([[3.0], [1.0]]), torch.tensor([[-2.0], [0.5]])
    assert L.d_loss("wgan-gp", real, fake).item() == pytest.approx(-0.75 - 2.0)
    assert L.g_loss("wgan-gp", fake).item() == pytest.approx(0.75)
    # hinge: relu(1 - r) = [0, 0]; relu(1 + f) = [0, 1.5]
    assert L.d_loss("hinge", real, fake).item() == pytest.approx(0.75)


def test_lsgan_targets():
    real, fake = torch.full((3, 1), 1.0), torch.full((3, 1), 0.0)
    assert L.d_loss("lsgan", real, fake).item() == 0.0
    assert L.g_loss("lsgan", torch.ones(3, 1)).item() == 0.0


def test_nonsaturating_keeps_gradient_where_minimax_saturates():
    # D confidently rejects the fake: the minimax G loss has a vanishing gradient, the NS one does not
    f1 = torch.tensor([[-10.0]], requires_grad=True)
    L.g_loss("vanilla", f1).backward()
    f2 = torch.tensor([[-10.0]], requires_grad=True)
    L.g_loss("nonsaturating", f2).backward()
    assert abs(f1.grad.item()) < 1e-4
    assert abs(f2.grad.item()) > 0.99


def test_multiscale_heads_are_averaged():
    a, b = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 2, 2), 2.0)
    fake = torch.zeros(2, 1)
    expected = (L.d_loss("hinge", a, fake) + L.d_loss("hinge", b, fake)) / 2
    assert L.d_loss("hinge", [a, b], [fake, fake]).item() == pytest.approx(expected.item())


def test_unknown_loss_is_config_error():
    with pytest.raises(ConfigError, match="unknown GAN loss"):
        L.d_loss("wasserstein", torch.zeros(1), torch.zeros(1))


def test_r1_penalty_of_linear_critic_is_squared_weight_norm():
    w = torch.tensor([0.5, -2.0, 1.0])
    x = torch.randn(5, 3, requires_grad=True)
    out = (x * w).sum(1, keepdim=True)
    assert L.r1_penalty(out, x).item() == pytest.approx(w.square().sum().item())


def test_r1_penalty_with_scale_is_unchanged():
    w = torch.tensor([0.5, -2.0, 1.0])
    x = torch.randn(5, 3, requires_grad=True)
    out = (x * w).sum(1, keepdim=True)
    assert L.r1_penalty(out, x, scale=1024.0).item() == pytest.approx(w.square().sum().item())


def test_r1_is_differentiable_wrt_critic_weights():
    w = torch.tensor([0.5, -2.0, 1.0], requires_grad=True)
    x = torch.randn(5, 3, requires_grad=True)
    L.r1_penalty((x * w).sum(1, keepdim=True), x).backward()
    torch.testing.assert_close(w.grad, 2 * w.detach())


def test_gradient_penalty_of_linear_critic():
    w = torch.full((1, 2, 2, 2), 0.25)  # ||w|| = 0.25 * sqrt(8)

    def critic(x):
        return (x * w).flatten(1).sum(1, keepdim=True)

    real, fake = torch.randn(3, 2, 2, 2), torch.randn(3, 2, 2, 2)
    gp = L.gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx((0.25 * math.sqrt(8) - 1) ** 2, rel=1e-5)


def test_gradient_penalty_draws_from_given_generator():
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    real, fake = torch.randn(4, 2, 2, 2), torch.randn(4, 2, 2, 2)
    a = L.gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    b = L.gradient_penalty(critic, real, fake, torch.Generator().manual_seed(1))
    c = L.gradient_penalty(critic, real, fake, torch.Generator().manual_seed(2))
    assert a.item() == b.item() and a.item() != c.item()


def test_feature_matching_modes():
    real = [torch.tensor([[1.0, 2.0], [3.0, 4.0]])]
    fake = [torch.tensor([[3.0, 4.0], [1.0, 2.0]], requires_grad=True)]
    assert L.feature_matching(real, fake, "mean").item() == 0.0  # same batch means
    assert L.feature_matching(real, fake, "paired").item() == pytest.approx(2.0)
    L.feature_matching(real, fake, "paired").backward()
    assert fake[0].grad.abs().sum() > 0
    with pytest.raises(ValueError):
        L.feature_matching(real, fake, "cosine")
