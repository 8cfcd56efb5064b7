"""A device budget as data: what `edgekd fit` must meet, every key optional.

    fit:
      device: rpi4           # a profile in devices/ (its `budgets:` fill the keys left out)
      rtf: 0.1               # processing seconds per audio second, at the device's thread count
      memory: 64MB           # model memory: weights + peak live activations (the runtime's own excluded)
      size: 5MB              # artifact file size
      latency_ms: 500        # offline: one 10 s inference; streaming: word-to-text, see below
      threads: 1             # threads the app gives the recognizer (default: the device's)
      streaming: true        # a streaming (chunked, cache-aware) student for sherpa-onnx online
      chunk_ms: 320          # streaming only: this chunk size (default: search 160/320/640)

A streaming budget's `rtf` is per chunk (compute / chunk duration) and its `latency_ms` is the
worst-case delay of a word's text: the chunk it falls in, the front end's lookahead (3 frames),
then that chunk's compute. The device profile's latency budget (an offline 10 s inference) does
not carry over to a streaming one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Optional

from edgekd.errors import ConfigError

_UNITS = {"": 1.0, "b": 1 / 2**20, "kb": 1 / 1024, "k": 1 / 1024, "mb": 1.0, "m": 1.0, "mib": 1.0, "kib": 1 / 1024,
          "gb": 1024.0, "g": 1024.0, "gib": 1024.0}


def parse_mb(value: Any, key: str) -> float:
    """'64MB', '512k', '1.5GB' or a number (MiB) -> MiB; one clear line otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        mb = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(f"fit.{key}: {value!r} is not a size (e.g. 64MB, 512KB, 1.5GB)")
        mb = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if mb <= 0:
        raise ConfigError(f"fit.{key}: must be > 0, got {value!r}")
    return mb


@dataclass(frozen=True)
class Budget:
    device: str
    rtf: Optional[float] = None
    memory_mb: Optional[float] = None
    size_mb: Optional[float] = None
    latency_ms: Optional[float] = None
    threads: Optional[int] = None
    streaming: bool = False
    chunk_ms: Optional[int] = None

    def __post_init__(self):
        self._verify()

    def _verify(self):
        for k in ("rtf", "memory_mb", "size_mb", "latency_ms"):
            v = getattr(self, k)
            if v is not None and not v > 0:
                raise ConfigError(f"fit.{k}: must be > 0, got {v}")
        if self.rtf is not None and self.rtf >= 1:
            raise ConfigError(f"fit.rtf: {self.rtf} >= 1 would not keep up with live audio; use a value below 1")
        if self.chunk_ms is not None and (not self.streaming or self.chunk_ms <= 0):
            raise ConfigError(f"fit.chunk_ms: {self.chunk_ms} needs streaming: true and a value > 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"fit.threads: must be >= 1, got {self.threads}")
        if not any(getattr(self, k) is not None for k in ("rtf", "memory_mb", "size_mb", "latency_ms")):
            raise ConfigError(f"fit: no budget for {self.device} (give rtf, memory, size or latency_ms, "
                              "or a device profile with budgets:)")

    def limits(self) -> dict[str, float]:
        """metric -> limit, for the keys that are set (metrics as the cost model names them)."""
        return {m: v for m, v in (("rtf", self.rtf), ("memory_mb", self.memory_mb), ("size_mb", self.size_mb),
                                  ("latency_ms", self.latency_ms)) if v is not None}

    def margins(self, cost: dict[str, float]) -> dict[str, float]:
        """Per budgeted metric, the share of the budget left (0.2 = 20 % under; negative = over)."""
        return {m: round(1 - cost[m] / v, 4) for m, v in self.limits().items()}

    def fits(self, cost: dict[str, float]) -> bool:
        return all(cost[m] <= v for m, v in self.limits().items())


def load_budget(block: dict[str, Any], devices_dir: str | None = None) -> Budget:
    """A budget from a YAML/CLI block; keys it leaves out come from the device profile's `budgets:`."""
    from edgekd.profile.devices import load_device

    if not isinstance(block, dict) or "device" not in block:
        raise ConfigError("fit: needs a `device:` (a profile in devices/, e.g. rpi4)")
    allowed = {"device", "rtf", "memory", "size", "latency_ms", "threads", "streaming", "chunk_ms"}
    unknown = sorted(set(block) - allowed)
    if unknown:
        raise ConfigError(f"fit: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    dev = load_device(str(block["device"]), devices_dir)
    given = {k: v for k, v in block.items() if v is not None}
    streaming = given.get("streaming", False)
    if not isinstance(streaming, bool):
        raise ConfigError(f"fit.streaming: true or false, got {streaming!r}")
    try:
        rtf = float(given["rtf"]) if "rtf" in given else dev.budgets.max_rtf
        lat = float(given["latency_ms"]) if "latency_ms" in given else (None if streaming else
                                                                          dev.budgets.max_latency_ms)
        threads = int(given["threads"]) if "threads" in given else None
        chunk = int(given["chunk_ms"]) if "chunk_ms" in given else None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"fit: {e}") from None
    mem = parse_mb(given["memory"], "memory") if "memory" in given else dev.budgets.max_memory_mb
    size = parse_mb(given["size"], "size") if "size" in given else None
    return Budget(dev.name, rtf, mem, size, lat, threads, streaming, chunk)


BUDGET_KEYS = tuple(f.name for f in fields(Budget))
