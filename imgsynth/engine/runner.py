"""The batched runner shared by the file-based commands.

Items are decoded by a ``prepare`` callable in DataLoader worker processes while the main process
computes (``workers=0`` decodes in-process), grouped into batches, processed, and written one by
one. A failing item is recorded and the batch goes on; the :class:`Report` says what happened.
Under ``torchrun`` (``WORLD_SIZE`` > 1) each rank takes every WORLD_SIZE-th item.
Progress goes through a callback; drawing it is the CLI's business.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from imgsynth.errors import ImgsynthError, UsageError

ProgressFn = Callable[[int, int, str], None]  # done, total, message


@dataclass
class ItemResult:
    """What happened to one item."""

    name: str
    status: str  # "ok" | "skipped" | "failed"
    output: str | None = None
    error: str | None = None
    seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        out = {"input": self.name, "status": self.status, "output": self.output}
        if self.error:
            out["error"] = self.error
        if self.metadata:
            out["metadata"] = self.metadata
        out["seconds"] = round(self.seconds, 4)
        return out


@dataclass
class Report:
    """The results of a batch, in input order."""

    results: list[ItemResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def counts(self) -> dict[str, int]:
        c = {"ok": 0, "skipped": 0, "failed": 0}
        for r in self.results:
            c[r.status] += 1
        return c

    def summary(self) -> str:
        c = self.counts()
        return f"{c['ok']} written, {c['skipped']} skipped (already done), {c['failed']} failed in {self.seconds:.1f} s"


@dataclass
class Failed:
    """A prepared item that could not be decoded."""

    name: str
    error: str


def finished(names: Sequence[str], outputs: Sequence[str], started: float | None = None) -> Report:
    """The report of a batch whose every output exists already (see ``OutputPlan.all_done``)."""
    report = Report([ItemResult(n, "skipped", output=o) for n, o in zip(names, outputs)])
    report.seconds = time.perf_counter() - started if started is not None else 0.0
    return report


def unusable(items: Sequence[Any], started: float | None = None) -> Report | None:
    """The report of a batch whose every input is already known to be unusable (not found, not a
    file): nothing to load or compute. None when some input may work."""
    if not items or not all(getattr(i, "error", None) for i in items):
        return None
    report = Report([ItemResult(i.path, "failed", error=f"{i.path}: {i.error}") for i in items])
    report.seconds = time.perf_counter() - started if started is not None else 0.0
    return report


def shard(items: Sequence[Any]) -> list[Any]:
    """This rank's share of ``items`` when launched by torchrun, else all of them."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return list(items[rank::world]) if world > 1 else list(items)


class _PrepareDataset:
    def __init__(self, items: Sequence[Any], prepare: Callable[[Any], Any], name_of: Callable[[Any], str]):
        self.items, self.prepare, self.name_of = items, prepare, name_of

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[str, Any]:
        name = self.name_of(self.items[i])
        try:
            return name, self.prepare(self.items[i])
        except UsageError:
            raise
        except ImgsynthError as e:
            return name, Failed(name, str(e))
        except OSError as e:  # anything the decoders let through: still this item's problem only
            return name, Failed(name, f"{name}: cannot read ({e.strerror or e})")
        except MemoryError:
            return name, Failed(name, f"{name}: too large to decode in the memory available")


def _identity(batch: list[Any]) -> list[Any]:
    return batch


def iter_prepared(
    items: Sequence[Any], prepare: Callable[[Any], Any], *, name_of: Callable[[Any], str],
    batch_size: int, workers: int,
) -> Iterator[list[Any]]:
    """Yield lists of (name, prepared item or :class:`Failed`), decoded in ``workers`` processes."""
    dataset = _PrepareDataset(items, prepare, name_of)
    if workers <= 0 or len(items) <= 1:
        for start in range(0, len(items), batch_size):
            yield [dataset[i] for i in range(start, min(start + batch_size, len(items)))]
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=min(workers, len(items)),
        collate_fn=_identity, prefetch_factor=2, persistent_workers=False,
    )
    yield from loader


def run_batched(
    items: Sequence[Any],
    *,
    prepare: Callable[[Any], Any],
    process: Callable[[list[Any]], list[Any]],
    write: Callable[[Any, Any], ItemResult],
    name_of: Callable[[Any], str],
    skip: Callable[[Any], str | None] = lambda item: None,
    batch_size: int = 1,
    workers: int = 0,
    progress: ProgressFn | None = None,
) -> Report:
    """Run ``prepare -> process -> write`` over ``items``.

    ``skip(item)`` returns an output path when the item is already done (it is then neither
    decoded nor computed). ``process`` maps a list of prepared items to a list of results;
    ``write(prepared, result)`` stores one and returns its :class:`ItemResult`. Library errors
    (:class:`ImgsynthError`) fail one item; usage errors and anything else propagate.
    """
    t0 = time.perf_counter()
    report = Report()
    total = len(items)
    todo = []
    for item in items:
        # stdin is never "already done": its content is new on every run
        try:
            done = None if getattr(item, "is_stdin", False) else skip(item)
        except UsageError:
            raise
        except ImgsynthError as e:  # e.g. an output name the file system refuses
            report.results.append(ItemResult(name_of(item), "failed", error=str(e)))
            continue
        if done is not None:
            report.results.append(ItemResult(name_of(item), "skipped", output=done))
        else:
            todo.append(item)
    if progress:
        progress(len(report.results), total, "")
    for batch in iter_prepared(todo, prepare, name_of=name_of, batch_size=batch_size, workers=workers):
        good = [(n, p) for n, p in batch if not isinstance(p, Failed)]
        for n, p in batch:
            if isinstance(p, Failed):
                report.results.append(ItemResult(n, "failed", error=p.error))
        if good:
            tb = time.perf_counter()
            try:
                outs = process([p for _, p in good])
            except UsageError:
                raise
            except ImgsynthError as e:
                outs = None
                for n, _ in good:
                    report.results.append(ItemResult(n, "failed", error=str(e)))
            per = (time.perf_counter() - tb) / len(good)
            for (n, p), out in zip(good, outs or []):
                try:
                    res = write(p, out)
                except UsageError:
                    raise
                except ImgsynthError as e:
                    res = ItemResult(n, "failed", error=str(e))
                except OSError as e:  # a write path that did not go through write_atomic
                    res = ItemResult(n, "failed", error=f"{e.filename or n}: cannot write ({e.strerror or e})")
                res.name, res.seconds = n, per
                report.results.append(res)
        if progress:
            progress(len(report.results), total, batch[-1][0] if batch else "")
    order = {name_of(it): i for i, it in enumerate(items)}
    report.results.sort(key=lambda r: order.get(r.name, 0))
    report.seconds = time.perf_counter() - t0
    return report


def chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    """Consecutive slices of at most ``n`` items."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
