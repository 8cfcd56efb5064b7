"""Fault suite, hostile checkpoints, preset/pipeline YAML and remote argv.

Helpers live in faultkit.py, shared fixtures in conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from faultkit import SR, cli, count, one_line_error, speech, wav

from edgekd.errors import EdgekdError

pytestmark = pytest.mark.usefixtures("fault_counts")


# ------------------------------------------------------------------ hostile checkpoints and YAML


def _hostile_checkpoints(good: Path, d: Path) -> dict[str, Path]:
    from safetensors.torch import load_file, save_file

    raw = good.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    sd = load_file(str(good))
    meta = dict(header["__metadata__"])
    out = {}

    def put(name, data: bytes):
        out[name] = d / f"{name}.safetensors"
        out[name].write_bytes(data)

    def with_header(name, h):
        b = json.dumps(h).encode()
        put(name, len(b).to_bytes(8, "little") + b + raw[8 + n :])

    def with_meta(name, **changes):
        m = dict(meta, **changes)
        out[name] = d / f"{name}.safetensors"
        save_file(sd, str(out[name]), metadata=m)

    def with_tensors(name, tensors):
        out[name] = d / f"{name}.safetensors"
        save_file(tensors, str(out[name]), metadata=meta)

    dims = json.loads(meta["dims"])
    put("empty", b"")
    put("seven_bytes", raw[:7])
    put("truncated_header", raw[: 8 + n // 2])
    put("truncated_data", raw[: len(raw) // 2])
    put("huge_header_len", (2**62).to_bytes(8, "little") + raw[8:])
    put("header_not_json", n.to_bytes(8, "little") + b"{" * n)
    put("pickle", b"\x80\x04\x95" + bytes(100))
    with_header("offsets_out_of_file", {**header, **{k: {**v, "data_offsets": [0, 10**12]}
                                                     for k, v in header.items() if k != "__metadata__"}})
    with_meta("not_edgekd", format="something-else")
    with_meta("dims_not_json", dims="{oops")
    with_meta("dims_a_list", dims="[1, 2]")
    with_meta("dims_unknown_key", dims=json.dumps({**dims, "evil": 1}))
    with_meta("dims_bad_type", dims=json.dumps({**dims, "d_model": "wide"}))
    with_meta("n_layers_2000", dims=json.dumps({**dims, "n_layers": 2000, "d_model": 1 << 20, "n_heads": 1}))
    with_meta("featurizer_bad", featurizer=json.dumps({"n_fft": -1}))
    with_meta("tokens_not_list", tokens=json.dumps("abc"))
    with_meta("tokens_wrong_count", tokens=json.dumps(["a", "b"]))
    with_tensors("missing_tensor", {k: v for i, (k, v) in enumerate(sd.items()) if i != 3})
    with_tensors("wrong_shape", {k: (v[..., :1].contiguous() if k == "head.weight" else v) for k, v in sd.items()})
    with_tensors("wrong_dtype", {k: (v.to(torch.int32) if k.endswith("w1.weight") else v) for k, v in sd.items()})
    with_tensors("extra_tensor", {**sd, "evil.weight": torch.zeros(3)})
    with_tensors("no_tensors", {"x": torch.zeros(1)})
    return out


def test_hostile_checkpoints_are_one_line_and_build_nothing(good_ckpt, tmp_path, monkeypatch):
    import edgekd.models as models
    from edgekd.models import load_checkpoint

    bad = _hostile_checkpoints(good_ckpt, tmp_path)
    assert len(bad) >= 20
    built = []
    real = models.ConformerCTC

    class Watch(real):
        def __init__(self, dims):
            built.append(dims.n_layers)
            if dims.n_layers >= 100:  # stop before the bomb goes off, should the check ever be lost
                raise AssertionError(f"a {dims.n_layers}-layer model was built from unchecked metadata")
            super().__init__(dims)

    monkeypatch.setattr(models, "ConformerCTC", Watch)
    for name, p in bad.items():
        with pytest.raises(EdgekdError) as ei:
            load_checkpoint(p)
        msg = str(ei.value)
        assert str(p) in msg and "\n" not in msg, (name, msg)
        count("inputs_tried")
    assert all(n < 100 for n in built), "a model was built from metadata the tensors do not back"
    assert load_checkpoint(good_ckpt).dims.n_layers == 2  # the good one still loads
    from edgekd.manifest import Utterance, write_manifest

    write_manifest(tmp_path / "m.jsonl", [Utterance(id="a", audio=str(wav(tmp_path / "a.wav", speech(SR))))])
    r = cli("pseudolabel", "-m", tmp_path / "m.jsonl", "--teacher", bad["n_layers_2000"], "--out", tmp_path / "pl")
    one_line_error(r, "2000 layers", "n_layers_2000.safetensors")
    assert not (tmp_path / "pl").exists()  # a failed start claims no folder


@pytest.mark.parametrize("text", ["!!python/object/apply:os.system ['touch pwned']", "- a\n- b\n",
                                  "d_model: [\n", "a: &a [*a]\n", "x: " + "[" * 5000 + "]" * 5000,
                                  "n_layers: {x: 1}\n", "d_model: 7\nn_heads: 4\n", None],
                         ids=["python_tag", "a_list", "unclosed", "alias_loop", "deep", "dict_value", "indivisible",
                              "latin1"])
def test_hostile_preset_yaml(tmp_path, text):
    from edgekd.models import load_preset

    p = tmp_path / "p.yaml"
    p.write_bytes("d_model: 144 # caf\xe9\n".encode("latin-1") if text is None else text.encode())
    with pytest.raises(EdgekdError) as ei:
        load_preset(str(p))
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    count("inputs_tried")


@pytest.mark.parametrize("text", ["!!python/object/apply:os.system ['touch pwned']", "- a\n", "run_dir: [\n",
                                  "x: " + "[" * 5000 + "]" * 5000, b"run_dir: caf\xe9\n"],
                         ids=["python_tag", "a_list", "unclosed", "deep", "latin1"])
def test_hostile_pipeline_yaml(tmp_path, text):
    from edgekd.config import load_yaml

    p = tmp_path / "c.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(EdgekdError) as ei:
        load_yaml(p)
    assert "\n" not in str(ei.value)
    count("inputs_tried")


# ------------------------------------------------------------------ remote argv


@pytest.mark.parametrize("field,value", [("host", "-oProxyCommand=touch /tmp/edgekd-pwned"), ("host", "-V"),
                                         ("host", "a b"), ("host", "evil\n-oProxyCommand=x"), ("host", ""),
                                         ("identity", "-oProxyCommand=touch /tmp/edgekd-pwned"),
                                         ("python", "-c"), ("python", "-mhttp.server"),
                                         ("remote_dir", "--help"), ("host", "pi@host/x")])
def test_remote_argv_injection_refused(field, value):
    from edgekd.profile.remote import RemoteError, SshTarget

    kw = {"host": "pi@raspberrypi.local", field: value}
    with pytest.raises(RemoteError) as ei:
        SshTarget(**kw)
    assert "\n" not in str(ei.value)
    count("inputs_tried")


def test_remote_argv_ends_options_before_host():
    from edgekd.profile.remote import SshTarget

    t = SshTarget("pi@raspberrypi.local", identity="/keys/id", python="/usr/bin/python3")
    s = t.ssh_cmd("true")
    assert s[s.index("--") + 1] == "pi@raspberrypi.local" and s[-1] == "true"
    c = t.scp_cmd(["-weird-local-file"], "pi@raspberrypi.local:x")
    assert c.index("--") < c.index("-weird-local-file")
