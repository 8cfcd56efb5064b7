from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from edgekd.config import apply_overrides, from_dict, load_yaml, to_dict
from edgekd.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    k: int = 8  # top-k
    names: tuple[str, ...] = ("a",)


@dataclass(frozen=True)
class Outer:
    lr: float = 1e-3
    mode: Literal["soft", "hard"] = "soft"
    inner: Inner = field(default_factory=Inner)
    path: Optional[str] = None

    def __post_init__(self):
        if self.mode == "hard" and self.inner.k != 1:
            raise ValueError("mode=hard and inner.k != 1 can't be given together")


def test_builds_and_coerces():
    o = from_dict(Outer, {"lr": 2, "inner": {"k": 4, "names": ["x", "y"]}})
    assert o.lr == 2.0 and isinstance(o.lr, float)
    assert o.inner == Inner(4, ("x", "y"))
    assert to_dict(o)["inner"]["names"] == ["x", "y"]


@pytest.mark.parametrize("data,msg", [
    ({"lrr": 1}, "unknown config key 'lrr'"),
    ({"inner": {"kk": 1}}, "unknown config key 'inner.kk'"),
    ({"lr": "fast"}, "lr: expected a number"),
    ({"inner": {"k": 1.5}}, "inner.k: expected an integer"),
    ({"inner": {"k": True}}, "inner.k: expected an integer"),
    ({"mode": "medium"}, "mode: 'medium' is not one of"),
    ({"inner": {"names": "x"}}, "inner.names: expected a list"),
    ({"mode": "hard"}, "can't be given together"),
])
def test_strict_errors_name_the_key(data, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(Outer, data)


def test_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.1\ninner:\n  k: 3\n")
    d = apply_overrides(load_yaml(p), ["inner.k=5", "path=/x", "inner.names=[a, b]"])
    o = from_dict(Outer, d)
    assert o.inner.k == 5 and o.path == "/x" and o.inner.names == ("a", "b")
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        from_dict(Outer, apply_overrides({}, ["nope.x=1"]))
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["novalue"])


def test_bad_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        load_yaml(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
