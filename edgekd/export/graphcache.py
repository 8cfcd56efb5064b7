"""Exported graphs remembered by content, in this process and (opt-in) on disk.

A dynamo ONNX export of even a tiny model takes 8-15 s and a litert-torch conversion ~12 s, and the
same weights are converted again and again: `edgekd export` converts once per LiteRT precision, fit
exports a variant and then its winner, the test suite exports one fixture model in several files.
`built(digest, build, ...)` returns the bytes `build(tmp_path)` writes, made once per content
digest (`content_digest`: the wrapper class, a key of whatever else shapes the graph, every
parameter and buffer, torch's version). The process memo is bounded; with $EDGEKD_GRAPH_CACHE set,
graphs are also kept in that folder for other processes (parallel test workers, a CI job, a rerun),
keyed by the digest plus the exporting code (`code_digest`), so other code never reuses them. Off
by default: every trained model's graph would pile up there.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

import torch

from edgekd import __version__
from edgekd.errors import EdgekdError

GRAPH_CACHE_ENV = "EDGEKD_GRAPH_CACHE"
_GRAPHS: dict[str, bytes] = {}
_GRAPHS_MAX_BYTES = 256 * 2**20


@functools.cache
def code_digest() -> str:
    """The code that shapes a graph: edgekd's models, export and featurizer, and the converters' versions."""
    from importlib.metadata import PackageNotFoundError, version

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(__version__.encode())
    for pkg in ("onnxscript", "litert-torch", "ai-edge-quantizer"):
        try:
            h.update(f"{pkg}={version(pkg)}".encode())
        except PackageNotFoundError:
            pass
    for f in sorted([*(root / "models").glob("*.py"), *(root / "export").glob("*.py"), root / "audio.py"]):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def content_digest(graph: torch.nn.Module, key: list) -> str:
    h = hashlib.sha256(json.dumps([type(graph).__qualname__, key, torch.__version__]).encode())
    for name, t in graph.state_dict().items():
        h.update(name.encode())
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _disk_path(digest: str, suffix: str) -> Path | None:
    d = os.environ.get(GRAPH_CACHE_ENV)
    if not d:
        return None
    return Path(d) / f"{hashlib.sha256((digest + code_digest()).encode()).hexdigest()}{suffix}"


def built(digest: str, build: Callable[[Path], None], tmp: Path, failure: str,
          check: Callable[[bytes], None], suffix: str) -> bytes:
    """What `build(tmp)` writes, once per `digest` (memo, then disk). `check(bytes)` raises on a
    damaged disk copy, which is then built anew and replaced. The caller's RNG is left as it was;
    a converter error becomes one line starting with `failure`."""
    disk = _disk_path(digest, suffix)
    if digest not in _GRAPHS and disk is not None and disk.is_file():
        data = disk.read_bytes()
        try:
            check(data)
            _remember(digest, data)
        except Exception:  # damaged: build again and replace it
            pass
    if digest not in _GRAPHS:
        with torch.no_grad(), warnings.catch_warnings(), torch.random.fork_rng():
            warnings.simplefilter("ignore")
            try:
                build(tmp)
            except Exception as e:  # the converter's own message is long; keep its first line
                raise EdgekdError(f"{failure}: {str(e).splitlines()[0]}") from e
        _remember(digest, tmp.read_bytes())
        tmp.unlink()
        if disk is not None:
            from edgekd.atomic import atomic_write

            atomic_write(disk, _GRAPHS[digest])  # rename: a reader in another process sees all or nothing
    return _GRAPHS[digest]


def _remember(key: str, data: bytes) -> None:
    _GRAPHS[key] = data
    while sum(map(len, _GRAPHS.values())) > _GRAPHS_MAX_BYTES and len(_GRAPHS) > 1:
        _GRAPHS.pop(next(iter(_GRAPHS)))  # oldest first
