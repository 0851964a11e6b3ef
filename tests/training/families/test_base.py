"""The family base: recipe constructor arguments checked by name and type, constructor failures as ConfigErrors."""

from __future__ import annotations

import pytest
from torch import nn

from imgsynth.errors import ConfigError
from imgsynth.training.families.base import check_kwargs, construct
from imgsynth.training.loop import train


class _Net(nn.Module):
    def __init__(self, width: int = 4, kernel: int | tuple[int, int] = 3, gain: float = 1.0, mode: str = "a"):
        super().__init__()
        if mode not in ("a", "b"):
            raise ValueError(f"mode must be 'a' or 'b', got {mode!r}")
        self.conv = nn.Conv2d(3, width, kernel)
        self.gain = gain


def test_check_kwargs_names_and_types():
    check_kwargs(_Net, {"width": 8, "kernel": [3, 5], "gain": 2, "mode": "b"}, "generator")
    check_kwargs(None, {"anything": 1}, "discriminator")  # a family without D
    with pytest.raises(ConfigError, match=r"^unknown config key 'model.generator.widht'; did you mean 'width'\?$"):
        check_kwargs(_Net, {"widht": 8}, "generator")
    with pytest.raises(ConfigError, match=r"^unknown config key 'model.generator.zzz'; known: width, kernel"):
        check_kwargs(_Net, {"zzz": 8}, "generator")
    with pytest.raises(ConfigError, match=r"^model.discriminator.width must be int, got 8.5$"):
        check_kwargs(_Net, {"width": 8.5}, "discriminator")
    with pytest.raises(ConfigError, match=r"^model.generator.kernel must be int \| tuple\[int, int\]"):
        check_kwargs(_Net, {"kernel": "3"}, "generator")


def test_construct_turns_constructor_failures_into_config_errors():
    assert construct(_Net, {"width": 2}, "generator").conv.out_channels == 2
    with pytest.raises(ConfigError, match=r"^model.generator: these values do not build _Net \(ValueError: mode"):
        construct(_Net, {"mode": "c"}, "generator")
    with pytest.raises(ConfigError, match=r"^model.generator: these values do not build _Net \(RuntimeError"):
        construct(_Net, {"width": -1}, "generator")
    with pytest.raises(ConfigError, match=r"layers without weights \(conv.weight, ...\)"):
        construct(_Net, {"width": 0}, "generator")


def test_network_arguments_are_checked_before_the_data(tmp_path, tiny):
    cfg = tiny(tmp_path, data={"path": str(tmp_path / "no-such-folder")},
               model={"generator": {"z_dim": 4, "ngf": "wide"}})
    with pytest.raises(ConfigError, match=r"^model.generator.ngf must be int, got 'wide'$"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_family_options_refuse_negative_and_non_finite_numbers(tmp_path, tiny):
    from imgsynth.training.families import get_family

    family = get_family("stylegan2")
    assert family.options(tiny(tmp_path, model={"options": {"pl_weight": 0}}))["pl_weight"] == 0.0
    for value, message in [(-0.5, "must not be negative, got -0.5"), (float("nan"), "must be a finite number"),
                           (float("inf"), "must be a finite number")]:
        with pytest.raises(ConfigError, match=f"^model.options.style_mixing {message}"):
            family.options(tiny(tmp_path, model={"options": {"style_mixing": value}}))
    with pytest.raises(ConfigError, match=r"^model.options.pl_weigth: .* no such option \(did you mean 'pl_weight'\?\)$"):
        family.options(tiny(tmp_path, model={"options": {"pl_weigth": 1.0}}))
