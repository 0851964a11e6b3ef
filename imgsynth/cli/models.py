"""``imgsynth models``: list, show, download and verify weight cards (no torch for list/show)."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from imgsynth.cli._common import error_line, handle_errors, stderr_console
from imgsynth.cli.options import DebugOpt, JsonOpt, OfflineOpt, RevisionOpt

app = typer.Typer(help="Weight cards: what models exist, where their weights come from, and their state here.",
                  no_args_is_help=True, rich_markup_mode="rich")


def _state(card) -> dict:
    from imgsynth.engine.fetch import cache_state

    state = cache_state(card)
    if not card.has_weights:
        sha = "-"
    elif card.source.sha256:
        sha = "pinned"
    else:
        sha = "not verified (no sha256 on card: could not be fetched from this network)"
    return {"weights": state, "sha256": sha}


@app.command("list")
@handle_errors
def list_(
    task: Annotated[Optional[str], typer.Option("--task", help="sample | translate | inpaint")] = None,
    json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List the models of every card in weights/.

    [bold]Examples:[/bold]

      imgsynth models list

      imgsynth models list --task inpaint --json
    """
    from imgsynth.engine.cards import TASKS, load_cards

    if task is not None and task not in TASKS:
        raise typer.BadParameter(f"--task must be one of {', '.join(TASKS)}")
    cards = [c for c in load_cards().values() if task is None or c.task == task]
    if json:
        for c in cards:
            sys.stdout.write(jsonlib.dumps({**c.summary(), **_state(c)}) + "\n")
        return
    columns = ("id", "task", "arch", "default", "weights", "sha256", "licence")
    rows = []
    for c in cards:
        st = _state(c)
        default = "task" if c.task_default else ("arch" if c.default else "")
        sha = "pinned" if st["sha256"] == "pinned" else ("-" if st["sha256"] == "-" else "not verified")
        rows.append((c.id, c.task, c.arch, default, st["weights"], sha, c.license))
    if not sys.stdout.isatty():
        # a pipe or a file: one plain tab-separated line per card, nothing truncated (`| grep ffhq`, `| cut -f1`)
        for row in (columns, *rows):
            sys.stdout.write("\t".join(" ".join(str(v).split()) for v in row) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in columns:
        # ids are what users copy: never cut; on a narrow terminal the licence is shortened first
        table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=16 if col == "licence" else None,
                         min_width=max(len(r[0]) for r in rows) if col == "id" and rows else None)
    for row in rows:
        table.add_row(*row)
    Console(no_color=None).print(table)


@app.command("show")
@handle_errors
def show(model_id: Annotated[str, typer.Argument(help="Card id (or an architecture's default).")],
         debug: DebugOpt = False) -> None:
    """Show one card as JSON: source, pinned revision, sha256, config, licence, paper.

    [bold]Example:[/bold]  imgsynth models show telea
    """
    from imgsynth.engine.cards import get_card

    card = get_card(model_id)
    sys.stdout.write(jsonlib.dumps({**card.summary(), **_state(card)}, indent=2) + "\n")


@app.command("download")
@handle_errors
def download(
    model_ids: Annotated[list[str], typer.Argument(help="Card ids to fetch into the Hugging Face cache.")],
    from_file: Annotated[Optional[Path], typer.Option(
        "--from-file", help="Use this file, downloaded by hand (e.g. from Google Drive in a browser), instead of "
        "the network: the card's file, its archive, or the archive's member. Checked, copied into the cache, "
        "converted; the cards then work offline.")] = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fetch weights into the cache (and convert official formats once), verifying sha256.

    Prints the path of each converted (or fetched) safetensors file on stdout.

    [bold]Examples:[/bold]

      imgsynth models download stylegan2-ffhq-256

      imgsynth models download pconv-places2-naoto \\
          --from-file ~/Downloads/1000000.pth

      imgsynth models download spade-coco spade-ade20k spade-cityscapes \\
          --from-file checkpoints.tar.gz
    """
    from imgsynth.engine.cards import get_card
    from imgsynth.engine.fetch import install_from_file, resolve_weights
    from imgsynth.errors import ImgsynthError

    if from_file is not None and revision is not None:
        raise typer.BadParameter("--revision applies to Hub downloads, not to --from-file")
    failed = 0
    for mid in model_ids:
        card = get_card(mid)
        if not card.has_weights:
            stderr_console().print(f"{card.id}: classical method, nothing to download")
            continue
        try:
            if from_file is not None:
                _, verified = install_from_file(card, from_file)
                stderr_console().print(
                    f"{card.id}: {from_file} " + ("matches the card's sha256" if verified
                                                  else "placed (the card pins no sha256 to check it against)")
                )
            path = resolve_weights(card, revision=revision, offline=offline or from_file is not None)
        except ImgsynthError as e:  # report every id, then fail
            if debug:
                raise
            error_line(f"{card.id}: {e}" if len(model_ids) > 1 else str(e))
            failed += 1
            continue
        sys.stdout.write(f"{path}\n")
    if failed:
        raise typer.Exit(1)


@app.command("verify")
@handle_errors
def verify(
    model_ids: Annotated[Optional[list[str]], typer.Argument(help="Card ids (default: all).")] = None,
    json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check the sha256 of every bundled or cached weight file against its card.

    [bold]Example:[/bold]  imgsynth models verify
    """
    from imgsynth.engine.cards import get_card, load_cards
    from imgsynth.engine.fetch import fetch_file
    from imgsynth.errors import WeightsError

    cards = [get_card(m) for m in model_ids] if model_ids else list(load_cards().values())
    bad = 0
    for card in cards:
        if not card.has_weights:
            continue
        try:
            fetch_file(card, offline=True)
            status = "ok" if card.source.sha256 else "present (no sha256 pinned)"
        except WeightsError as e:
            msg = str(e)
            if "not in the cache" in msg:
                status = "not cached"
            else:
                status, bad = f"FAILED: {msg}", bad + 1
        if json:
            sys.stdout.write(jsonlib.dumps({"id": card.id, "status": status}) + "\n")
        else:
            sys.stdout.write(f"{card.id}: {status}\n")
    if bad:
        raise typer.Exit(1)
