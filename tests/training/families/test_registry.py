"""The family registry: known names, unknown names, checked options."""

import pytest

from imgsynth.errors import ConfigError
from imgsynth.training.loop import train


def test_family_options_are_checked(tmp_path, tiny):
    with pytest.raises(ConfigError, match=r"model.options.mixing: the 'stylegan2' family has no such option"):
        train(tiny(tmp_path, model={"family": "stylegan2", "options": {"mixing": 0.5}}))
    with pytest.raises(ConfigError, match=r"model.options.style_mixing must be float"):
        train(tiny(tmp_path, model={"family": "stylegan2", "options": {"style_mixing": "yes"}}))
    from imgsynth.training.families import list_families

    known = list_families()
    assert {"dcgan", "gan", "progan", "stylegan", "stylegan2", "pix2pix", "pix2pixhd", "spade", "panoptic"} <= set(known)
    with pytest.raises(ConfigError, match=r"unknown model.family 'stylegan3'; did you mean 'stylegan'\?$"):
        train(tiny(tmp_path, model={"family": "stylegan3"}))
    with pytest.raises(ConfigError, match=rf"unknown model.family 'diffusion'; known: {', '.join(known)}$"):
        train(tiny(tmp_path, model={"family": "diffusion"}))


def test_one_module_per_family_named_like_its_model_file():
    """Each family lives in families/<name>.py, <name> being a module of imgsynth.models, and registers itself."""
    import importlib
    from pathlib import Path

    import imgsynth.models
    from imgsynth.training.families import FAMILY_MODULES, get_family, list_families

    models = {p.stem for p in Path(imgsynth.models.__file__).parent.glob("*.py")}
    for name in list_families():
        assert FAMILY_MODULES[name] == f"imgsynth.training.families.{name}"
        assert name in models, name
        module = importlib.import_module(FAMILY_MODULES[name])
        family = get_family(name)
        assert family.name == name and type(family).__module__ == module.__name__


def test_data_and_mosaics_do_not_import_each_other():
    import ast
    from pathlib import Path

    import imgsynth.training

    root = Path(imgsynth.training.__file__).parent

    def imports(name):
        tree = ast.parse((root / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    assert "imgsynth.training.data" not in imports("mosaics")
    assert "imgsynth.training.data" not in imports("idx") and "imgsynth.training.mosaics" not in imports("idx")
