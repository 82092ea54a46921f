"""The run-wise gzip: any sequence of bodies decompresses to each body exactly (crc and
length checked by gzip itself), and only runs whose parts changed are compressed again."""

from __future__ import annotations

import gzip
import subprocess
import zlib

import pytest

from agent.exposition import gzipruns
from agent.exposition.gzipruns import RunGzip


def _runs(families: list[bytes]) -> list[tuple[object, list[bytes | memoryview]]]:
    runs: list[tuple[object, list[bytes | memoryview]]] = []
    for i, family in enumerate(families):
        if i % 3 == 0:
            runs.append((i, []))
        runs[-1][1].append(family)
    return runs


def _body(runs: list[tuple[object, list[bytes | memoryview]]]) -> bytes:
    return b"".join(part for _, parts in runs for part in parts)


def test_bodies_decompress_exactly_as_runs_change() -> None:
    families = [f"# TYPE f{i} gauge\nf{i} {i}\n".encode() * (i + 1) for i in range(20)]
    families[5] = memoryview(b"x" * 70000)[3:]  # several deflate blocks, a memoryview part
    zipper = RunGzip(1)
    for change in (None, 0, 7, 19, None):
        if change is not None:
            families[change] = families[change] + b"# changed\n"
        runs = _runs(families)
        plain = _body(runs)
        assert gzip.decompress(zipper.compress(runs, plain)) == plain
        # A real gunzip agrees, crc and length included.
        out = subprocess.run(["gzip", "-dc"], input=zipper.compress(runs, plain),
                             capture_output=True, check=True)
        assert out.stdout == plain


def test_empty_body() -> None:
    assert gzip.decompress(RunGzip(1).compress([], b"")) == b""


def test_only_changed_runs_are_compressed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    families = [f"f{i} {i}\n".encode() for i in range(9)]
    zipper = RunGzip(1)
    zipper.compress(_runs(families), _body(_runs(families)))
    calls = []
    real = zlib.compressobj

    def counting(*args: int) -> zlib._Compress:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(gzipruns.zlib, "compressobj", counting)
    zipper.compress(_runs(families), _body(_runs(families)))
    assert calls == []
    families[4] = b"f4 5\n"
    runs = _runs(families)
    assert gzip.decompress(zipper.compress(runs, _body(runs))) == _body(runs)
    assert len(calls) == 1  # the run holding family 4
