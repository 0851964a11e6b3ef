"""BatchNorm recalibration of exported generators."""

import pytest
import torch
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.training.recalibrate import recalibrate_batchnorm


def test_statistics_are_the_average_over_the_given_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, momentum=0.3))
    model[1].running_mean.fill_(5.0)
    batches = [(torch.randn(4, 2, 5, 5) * (i + 1),) for i in range(3)]
    assert recalibrate_batchnorm(model, iter(batches)) == 3
    with torch.no_grad():
        feats = [model[0](x) for (x,) in batches]
    want_mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    want_var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    assert torch.allclose(model[1].running_mean, want_mean, atol=1e-6)
    assert torch.allclose(model[1].running_var, want_var, atol=1e-5)
    assert not model.training and model[1].momentum == 0.3
    # eval mode now normalises a batch like the batches seen (mean ~ 0 over all of them)
    with torch.no_grad():
        out = torch.cat([model(x) for (x,) in batches])
    assert out.mean((0, 2, 3)).abs().max() < 1e-5


def test_refuses_models_without_batchnorm_and_empty_data():
    with pytest.raises(ConfigError, match="no BatchNorm"):
        recalibrate_batchnorm(nn.Conv2d(1, 1, 1), [(torch.zeros(1, 1, 2, 2),)])
    model = nn.Sequential(nn.BatchNorm2d(1))
    with pytest.raises(ConfigError, match="no batches"):
        recalibrate_batchnorm(model, [])
    assert model[0].momentum == 0.1 and not model.training
