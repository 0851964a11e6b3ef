"""Output that survives pipes and narrow terminals: ``models list`` in a pipe, ``--help`` at 80 columns."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from imgsynth.cli.main import app

from help_examples import commands, help_example_lines

runner = CliRunner()


def test_models_list_in_a_pipe_is_a_full_tab_separated_table():
    res = runner.invoke(app, ["models", "list"])  # CliRunner's stdout is not a terminal
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split("\t") == ["id", "task", "arch", "default", "weights", "sha256", "licence"]
    rows = [ln.split("\t") for ln in lines[1:]]
    assert all(len(r) == 7 for r in rows)
    ids = [r[0] for r in rows]
    from imgsynth.engine.cards import load_cards

    assert ids == list(load_cards())  # every card, full ids
    ffhq = [ln for ln in lines if "ffhq" in ln]  # what `| grep ffhq` finds
    assert {"stylegan2-ffhq-256", "stylegan2-ffhq-1024"} <= {ln.split("\t")[0] for ln in ffhq}
    assert not any("…" in ln for ln in lines)


def _render(path: str) -> list[str]:
    args = path.split()[1:] + ["--help"]
    res = runner.invoke(app, args, env={"COLUMNS": "80", "NO_COLOR": "1", "TERMINAL_WIDTH": "80"})
    assert res.exit_code == 0, res.output
    return res.stdout.splitlines()


@pytest.mark.parametrize("path", sorted(commands()))
def test_help_examples_never_wrap_at_80_columns(path):
    rendered = _render(path)
    assert all(len(ln) <= 80 for ln in rendered), max(rendered, key=len)
    text = "\n".join(rendered)
    for cmd_path, line in help_example_lines():
        if cmd_path == path:
            assert any(line in ln for ln in rendered), f"{line!r} is wrapped in `{path} --help`:\n{text}"


def test_inpaint_strategy_table_fits_80_columns():
    rendered = _render("imgsynth inpaint")
    start = next(i for i, ln in enumerate(rendered) if "--strategy (how a photo" in ln)
    table = rendered[start: next(i for i in range(start, len(rendered)) if not rendered[i].strip())]
    from imgsynth.cli.inpaint import HELP

    source = HELP[HELP.index("(how a photo meets"):].splitlines()[1:]
    source = [re.sub(r"\[/?bold\]", "", s).strip() for s in source if s.strip()]
    assert len(table) - 1 == len(source)  # no source line became two
    for src in source:
        assert any(src in ln for ln in table), src
