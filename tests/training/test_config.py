import collections.abc
from pathlib import Path

import pytest
import tomllib

from imgsynth.errors import ConfigError
from imgsynth.training.config import (
    TrainConfig,
    UnsupportedType,
    apply_overrides,
    check_value,
    dumps_config,
    from_dict,
    load_recipe,
    parse_value,
    recipe_error,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "train" / "dcgan-fashion-mnist.toml"


@pytest.mark.parametrize("recipe", sorted((ROOT / "examples" / "train").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_recipe_loads(recipe):
    from imgsynth.training.families import get_family

    cfg = load_recipe(recipe)
    get_family(cfg.model.family).options(cfg)


def test_example_recipe_loads():
    cfg = load_recipe(EXAMPLE)
    assert cfg.model.family == "dcgan"
    assert cfg.data.source == "fashion-mnist" and cfg.data.resolution == 32
    assert cfg.optim.betas == [0.5, 0.999]


def test_overrides_are_typed():
    cfg = load_recipe(EXAMPLE, [
        "run.steps=12", "optim.g_lr=1e-4", "data.hflip=false", "optim.betas=[0.0, 0.99]",
        "run.out_dir=/tmp/some where/run", "model.generator.ngf=8", "loss.gan=hinge",
    ])
    assert cfg.run.steps == 12
    assert cfg.optim.g_lr == 1e-4 and isinstance(cfg.optim.g_lr, float)
    assert cfg.data.hflip is False
    assert cfg.optim.betas == [0.0, 0.99]
    assert cfg.run.out_dir == "/tmp/some where/run"
    assert cfg.model.generator == {"z_dim": 64, "ngf": 8}
    assert cfg.loss.gan == "hinge"


def test_int_widens_to_float_but_not_the_reverse():
    assert from_dict({"optim": {"g_lr": 1}}).optim.g_lr == 1.0
    with pytest.raises(ConfigError, match=r"run\.steps must be int"):
        from_dict({"run": {"steps": 2.5}})


@pytest.mark.parametrize("item, message", [
    ("run.steps=many", r"run\.steps must be int, got 'many'"),
    ("data.hflip=1", r"data\.hflip must be bool"),
    ("loss.gan=wasserstein", r"loss\.gan must be 'vanilla' \| 'nonsaturating'"),
    ("optim.betas=0.5", r"optim\.betas must be list\[float\]"),
    ("run.stepz=3", r"unknown config key 'run\.stepz'; did you mean 'steps'"),
    ("trainer.steps=3", r"unknown config key 'trainer'"),
    ("steps=3", r"--set expects section\.key=value"),
    ("run.steps", r"--set expects section\.key=value"),
    ("run.steps=0", r"run\.steps must be at least 1"),
    ("optim.ema_decay=1.0", r"optim\.ema_decay must be in \[0, 1\)"),
    ("data.channels=2", r"data\.channels must be 0"),
    ("data.load_size=16", r"data\.load_size \(16\) must be 0 or at least"),
    ("data.source=paired", r"needs data\.path .* and data\.path_b"),
    ("run.seed=-1", r"run\.seed must not be negative"),
    ("data.item_size=-2", r"data\.item_size must not be negative"),
    ("data.frames=0", r"data\.frames must be at least 1"),
    ("optim.g_lr=nan", r"optim\.g_lr must be a finite number, got nan"),
    ("optim.betas=[0.5, inf]", r"optim\.betas must be a finite number"),
    ("augment.kimg=inf", r"augment\.kimg must be a finite number"),
    ("run.device=gpu", r"run\.device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
])
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(EXAMPLE, [item])


def test_errors_name_the_file_and_the_override(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_recipe(EXAMPLE, ["run.steps=12", "run.stepz=3"])
    assert str(err.value) == (f"{EXAMPLE}: unknown config key 'run.stepz'; did you mean 'steps'? "
                              "(set on the command line: run.stepz=3)")
    bad = tmp_path / "bad.toml"
    bad.write_text("[loss]\ngan = 'wgan'\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(bad, ["run.steps=3"])
    assert str(err.value).startswith(f"{bad}: loss.gan must be 'vanilla'") and "command line" not in str(err.value)
    assert str(recipe_error(bad, err.value)) == str(err.value)  # named once


def test_check_value_types():
    assert check_value([1, 2], tuple[int, int], "k") == (1, 2)
    assert check_value([1, 2, 3], tuple[int, ...], "k") == (1, 2, 3)
    assert check_value([4, 8], collections.abc.Sequence[int], "k") == [4, 8]
    assert check_value(3, int | tuple[int, int], "k") == 3
    assert check_value({"a": 1}, dict, "k") == {"a": 1}
    for value, tp in [([1], tuple[int, int]), ([1.5], tuple[int, ...]), ("ab", collections.abc.Sequence[int]),
                      (True, int), (2, str), ("x", dict)]:
        with pytest.raises(ConfigError, match=r"^m\.k(\[0\])? must be"):
            check_value(value, tp, "m.k")
    with pytest.raises(UnsupportedType):
        check_value(1, complex, "k")


def test_section_must_be_a_table():
    with pytest.raises(ConfigError, match="run must be a table"):
        from_dict({"run": 3})
    with pytest.raises(ConfigError, match="not a table"):
        apply_overrides({"run": 3}, ["run.steps=2"])


def test_parse_value():
    assert parse_value("3") == 3
    assert parse_value("2e-4") == 2e-4
    assert parse_value("true") is True
    assert parse_value('"quoted"') == "quoted"
    assert parse_value("bare/path.png") == "bare/path.png"
    assert parse_value("[1, 2]") == [1, 2]


def test_missing_and_invalid_recipe(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nsteps = 3\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_recipe(bad)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_recipe(EXAMPLE, ["model.generator.name=with \"quotes\"\\n", "data.name=fashion"])
    text = dumps_config(cfg)
    assert tomllib.loads(text) == cfg.to_dict()
    (tmp_path / "resolved.toml").write_text(text)
    assert load_recipe(tmp_path / "resolved.toml") == cfg


def test_defaults_round_trip():
    cfg = TrainConfig()
    assert from_dict(tomllib.loads(dumps_config(cfg))) == cfg
