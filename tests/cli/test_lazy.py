"""Start-up helpers: commands built on demand with the same help, and Typer's help renderer loaded lighter."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from imgsynth.cli.main import app

runner = CliRunner()


def _render(group, capsys) -> str:
    group.get_help(typer.Context(group, info_name="imgsynth"))
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", ["80", "200"])
def test_top_level_help_lists_the_same_as_the_built_commands(columns, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", columns)
    group = typer.main.get_command(app)
    lazy = _render(group, capsys)
    assert group.commands == {}, "the listing built commands"
    ctx = typer.Context(group, info_name="imgsynth")
    names = group.list_commands(ctx)
    assert names[:3] == ["sample", "interpolate", "translate"] and names[-1] == "models"
    for name in names:
        assert group.get_command(ctx, name).params or name in ("train", "models")
    assert set(group.commands) == set(names)
    built = _render(group, capsys)
    assert lazy == built
    for name in names:
        assert f" {name} " in lazy


def test_unknown_command_still_suggests():
    res = runner.invoke(app, ["inpant", "x.png"])
    assert res.exit_code == 2 and "Did you mean 'inpaint'?" in res.output
    res = runner.invoke(app, ["models", "lst"])
    assert res.exit_code == 2 and "Did you mean 'list'?" in res.output


def test_a_command_is_built_alone():
    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="imgsynth")
    cmd = group.get_command(ctx, "inpaint")
    assert "--mask" in {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert list(group.commands) == ["inpaint"]
    assert group.get_command(ctx, "nope") is None


def test_help_loads_neither_markdown_nor_pygments_and_deferred_names_still_work():
    code = (
        "import sys\n"
        "from imgsynth.cli.main import app\n"
        "try:\n"
        "    app(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('markdown_it', 'pygments')\n"
        "         or m in ('rich.markdown', 'rich.traceback')]\n"
        "assert 'typer.rich_utils' in sys.modules and not heavy, heavy\n"
        "import typer.rich_utils as ru\n"
        "import rich.markdown, rich.traceback\n"
        "assert isinstance(ru.Markdown('# x'), rich.markdown.Markdown)\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError as e:\n"
        "    tb = ru.Traceback.from_exception(type(e), e, e.__traceback__)\n"
        "assert isinstance(tb, rich.traceback.Traceback)\n"
        "assert rich.markdown.Markdown is not ru.Markdown and hasattr(rich.markdown, 'Heading')\n"
    )
    _python(code)


def test_light_loader_steps_aside_once_markdown_is_loaded():
    code = (
        "import sys, rich.markdown\n"
        "from imgsynth.cli import _lazy\n"
        "_lazy.install(); _lazy.install()\n"
        "assert sum(isinstance(f, _lazy.LightRichUtils) for f in sys.meta_path) == 1\n"
        "import typer.rich_utils as ru\n"
        "assert ru.Markdown is rich.markdown.Markdown\n"
    )
    _python(code)


def _python(code: str) -> None:
    """Run ``code`` in a fresh interpreter (what is imported at start-up is the point); it must pass."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
