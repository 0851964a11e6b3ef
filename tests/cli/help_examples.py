"""The runnable examples of every ``--help`` text and of README.md, parsed from the sources.

Example lines start with ``imgsynth``, ``cat ... | imgsynth`` or ``torchrun``; a trailing ``\\``
continues a command on the next line; ``# ...`` comments and Rich markup are dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_MARKUP = re.compile(r"\[/?(?:bold|dim|italic|b|i)\]")
_START = re.compile(r"^(imgsynth |cat \S+ \| imgsynth |torchrun |apt-get |pip |PYTHONPATH=)")


def commands() -> dict[str, object]:
    """``"imgsynth inpaint"`` -> click command, for every command and sub-command."""
    import typer

    from imgsynth.cli.main import app

    out: dict[str, object] = {}

    def walk(cmd: object, path: str) -> None:
        out[path] = cmd
        if hasattr(cmd, "list_commands"):  # through the Click API: the top level builds its commands on demand
            ctx = typer.Context(cmd, info_name=path.rsplit(" ", 1)[-1])
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), f"{path} {name}")

    walk(typer.main.get_command(app), "imgsynth")
    return out


def _join(lines: list[str]) -> list[str]:
    """Example commands out of text lines (continuations joined, comments dropped)."""
    cmds: list[str] = []
    pending: str | None = None
    for raw in lines:
        line = _MARKUP.sub("", raw).strip()
        if line.startswith("Example:"):
            line = line[len("Example:"):].strip()
        if pending is not None:
            pending += " " + line.rstrip("\\").strip()
            if not line.endswith("\\"):
                cmds.append(pending)
                pending = None
            continue
        if not _START.match(line):
            continue
        if line.endswith("\\"):
            pending = line.rstrip("\\").strip()
        else:
            cmds.append(line)
    return [re.sub(r"\s+#\s.*$", "", c).strip() for c in cmds]


def help_examples() -> list[tuple[str, str]]:
    """(command path, example) for every example in every ``--help``."""
    out = []
    for path, cmd in commands().items():
        text = getattr(cmd, "help", None) or ""
        out += [(path, c) for c in _join(text.splitlines()) if "imgsynth" in c]
    return out


def help_example_lines() -> list[tuple[str, str]]:
    """(command path, physical example line as written) — what must not wrap at 80 columns."""
    out = []
    for path, cmd in commands().items():
        text = getattr(cmd, "help", None) or ""
        pending = False
        for raw in text.splitlines():
            line = _MARKUP.sub("", raw).strip()
            if line.startswith("Example:"):
                line = line[len("Example:"):].strip()
            if pending or _START.match(line):
                out.append((path, line))
                pending = line.endswith("\\")
    return out


def readme_blocks(readme: Path = ROOT / "README.md") -> list[str]:
    """The commands of README.md's ```bash blocks, in order."""
    text = readme.read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        cmds += _join(block.splitlines())
    return cmds
