"""Device profiles: `devices/<name>.yaml` (data, not code) loaded into frozen dataclasses.

The loader is strict: an unknown key, a missing field or a wrong type stops with a message naming
the file and the key path (`devices/rpi4.yaml: clusters[0].max_ghz: missing`). The schema is
documented by the commented dataclasses below; every spec figure carries its source in a YAML comment.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from edgekd.config import from_dict
from edgekd.errors import EdgekdError

DEVICES_DIR = Path(os.environ.get("EDGEKD_DEVICES_DIR", Path(__file__).resolve().parents[2] / "devices"))
ISA_FEATURES = ("neon", "dotprod", "fp16", "i8mm", "sve", "sve2", "avx2", "avx512", "fma")
RUNTIMES = ("onnxruntime", "litert")
ACCESS = ("ssh", "adb", "local")
MATCH_KEYS = ("runtime", "format", "quantization", "os_arch", "via", "threads")
EFFECTS = ("fails", "wrong-output", "slow", "no-speedup")


class DeviceError(EdgekdError):
    """A device profile that cannot be used: the message names the file and the key."""


@dataclass(frozen=True)
class Cluster:
    core: str  # core name, e.g. cortex-a72
    count: int  # cores in this cluster
    max_ghz: float  # max sustained clock of these cores
    fp32_flops_per_cycle: float  # peak fp32 FLOP/cycle/core (FMA = 2 FLOP), from the core's optimization guide


@dataclass(frozen=True)
class Budgets:
    max_rtf: Optional[float] = None  # processing s / audio s must stay below
    max_latency_ms: Optional[float] = None  # per inference (offline) or per chunk (streaming)
    max_memory_mb: Optional[float] = None  # peak RSS of the runner process


@dataclass(frozen=True)
class KnownBroken:
    match: dict[str, Any]  # config keys (runtime/format/quantization/os_arch/via/threads) that must all equal
    reason: str  # why it does not work: shown to the user
    effect: str = "fails"  # fails | wrong-output | slow | no-speedup


@dataclass(frozen=True)
class Device:
    name: str  # equals the file stem
    description: str
    kind: str  # sbc | phone | host
    soc: str
    os: str
    arch: str  # aarch64 | x86_64 | armv7l
    clusters: tuple[Cluster, ...]  # fastest first
    isa: tuple[str, ...]  # subset of ISA_FEATURES
    ram_gb: float
    mem_bandwidth_gbs: float  # theoretical DRAM peak (bus width x transfer rate)
    llc_kb: float  # last-level cache size: working sets below it are not DRAM-bound
    runtime: str  # preferred runtime: onnxruntime | litert (LiteRT uses XNNPACK)
    threads: int  # default intra-op threads for benchmarks on this device
    access: str  # ssh | adb | local
    budgets: Budgets = field(default_factory=Budgets)
    known_broken: tuple[KnownBroken, ...] = ()
    path: str = ""  # the YAML it came from (not a YAML key)

    @property
    def cores(self) -> int:
        return sum(c.count for c in self.clusters)

    def core_list(self) -> list[Cluster]:
        """One entry per core, fastest (by peak FLOP/s) first: the cores `threads` threads land on."""
        cores = [c for c in self.clusters for _ in range(c.count)]
        return sorted(cores, key=lambda c: -c.max_ghz * c.fp32_flops_per_cycle)

    def broken_for(self, config: dict[str, Any]) -> list[KnownBroken]:
        """Known-broken entries whose every `match` key equals `config`'s value."""
        return [kb for kb in self.known_broken
                if all(k in config and config[k] == v for k, v in kb.match.items())]


def _validate(dev: Device, where: str) -> None:
    def bad(key: str, msg: str):
        raise DeviceError(f"{where} {key}: {msg}")

    if not dev.clusters:
        bad("clusters", "at least one cluster is needed")
    for i, c in enumerate(dev.clusters):
        if c.count <= 0 or c.max_ghz <= 0 or c.fp32_flops_per_cycle <= 0:
            bad(f"clusters[{i}]", "count, max_ghz and fp32_flops_per_cycle must be > 0")
    for f in dev.isa:
        if f not in ISA_FEATURES:
            bad("isa", f"unknown feature '{f}' (known: {', '.join(ISA_FEATURES)})")
    if dev.runtime not in RUNTIMES:
        bad("runtime", f"'{dev.runtime}' is not one of {', '.join(RUNTIMES)}")
    if dev.access not in ACCESS:
        bad("access", f"'{dev.access}' is not one of {', '.join(ACCESS)}")
    if not 1 <= dev.threads <= dev.cores:
        bad("threads", f"{dev.threads} must be between 1 and the {dev.cores} cores")
    for key in ("ram_gb", "mem_bandwidth_gbs", "llc_kb"):
        if getattr(dev, key) <= 0:
            bad(key, "must be > 0")
    for i, kb in enumerate(dev.known_broken):
        if not kb.reason.strip():
            bad(f"known_broken[{i}].reason", "must say why")
        if not kb.match:
            bad(f"known_broken[{i}].match", "must name at least one config key")
        for k in kb.match:
            if k not in MATCH_KEYS:
                bad(f"known_broken[{i}].match", f"unknown key '{k}' (known: {', '.join(MATCH_KEYS)})")
        if kb.effect not in EFFECTS:
            bad(f"known_broken[{i}].effect", f"'{kb.effect}' is not one of {', '.join(EFFECTS)}")


def load_device_file(path: str | Path) -> Device:
    path = Path(path)
    where = f"{path}:"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DeviceError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise DeviceError(f"{path}: not valid YAML ({e})") from None
    dev = from_dict(Device, data, where, error=DeviceError, exclude=("path",))
    if dev.name != path.stem:
        raise DeviceError(f"{where} name: '{dev.name}' must equal the file name '{path.stem}'")
    _validate(dev, where)
    return dataclasses.replace(dev, path=str(path))


def list_devices(devices_dir: str | Path | None = None) -> list[str]:
    return sorted(p.stem for p in Path(devices_dir or DEVICES_DIR).glob("*.yaml"))


def load_device(name: str, devices_dir: str | Path | None = None) -> Device:
    """A device by name (devices/<name>.yaml) or by path to a YAML file."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        return load_device_file(name)
    path = Path(devices_dir or DEVICES_DIR) / f"{name}.yaml"
    if not path.exists():
        raise DeviceError(f"Unknown device '{name}'. Known: {', '.join(list_devices(devices_dir))}")
    return load_device_file(path)


def load_all(devices_dir: str | Path | None = None) -> list[Device]:
    return [load_device(n, devices_dir) for n in list_devices(devices_dir)]
