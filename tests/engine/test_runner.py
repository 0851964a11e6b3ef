"""The batched runner: failures isolated, skips, order, workers, sharding under torchrun."""

from __future__ import annotations

import pytest

from imgsynth.engine.runner import ItemResult, run_batched, shard
from imgsynth.errors import InputError, UsageError


def prepare(x: int) -> int:
    if x == 3:
        raise InputError(f"item{x}: broken")
    return x


@pytest.mark.parametrize("workers", [0, 2])
def test_failures_isolated_and_order_kept(workers):
    written = []

    def write(p, out):
        written.append(out)
        return ItemResult(f"item{p}", "ok", output=str(out))

    report = run_batched(list(range(6)), prepare=prepare, process=lambda b: [x * 10 for x in b], write=write,
                         name_of=lambda x: f"item{x}", skip=lambda x: "done" if x == 5 else None,
                         batch_size=2, workers=workers)
    assert [r.status for r in report.results] == ["ok", "ok", "ok", "failed", "ok", "skipped"]
    assert report.results[3].error == "item3: broken" and report.exit_code == 1
    assert sorted(written) == [0, 10, 20, 40]
    assert report.counts() == {"ok": 4, "skipped": 1, "failed": 1}


def test_usage_errors_propagate():
    def process(batch):
        raise UsageError("bad option")

    with pytest.raises(UsageError):
        run_batched([1], prepare=prepare, process=process, write=None, name_of=str)


def test_shard_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    assert shard(list(range(8))) == [1, 4, 7]
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert shard([1, 2]) == [1, 2]


def test_unusable_reports_a_batch_with_no_usable_input():
    from imgsynth.engine.io import InputItem
    from imgsynth.engine.runner import unusable

    gone = [InputItem("a.png", "a", "file not found"), InputItem("d", "d", "not a file")]
    report = unusable(gone, started=0.0)
    assert [(r.name, r.status, r.error) for r in report.results] == [
        ("a.png", "failed", "a.png: file not found"), ("d", "failed", "d: not a file")]
    assert report.exit_code == 1
    assert unusable(gone + [InputItem("b.png", "b")]) is None
    assert unusable([]) is None
