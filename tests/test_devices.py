"""Device profiles: every shipped YAML loads; the loader rejects bad files naming file and key."""

import shutil

import pytest
import yaml

from edgekd.profile.devices import (DEVICES_DIR, DeviceError, list_devices, load_all, load_device,
                                    load_device_file)

REQUIRED = {"rpi3", "rpi4", "rpi5", "android-budget", "android-flagship", "pixel7"}


def test_shipped_profiles_load_and_cover_the_targets():
    devs = {d.name: d for d in load_all()}
    assert REQUIRED <= set(devs)
    assert devs["rpi3"].clusters[0].core == "cortex-a53" and devs["rpi4"].clusters[0].core == "cortex-a72"
    assert devs["rpi5"].clusters[0].core == "cortex-a76"
    for d in devs.values():
        assert 1 <= d.threads <= d.cores and d.mem_bandwidth_gbs > 0
        assert d.access in ("ssh", "adb") and d.runtime in ("onnxruntime", "litert")
        cores = d.core_list()
        assert len(cores) == d.cores
        speeds = [c.max_ghz * c.fp32_flops_per_cycle for c in cores]
        assert speeds == sorted(speeds, reverse=True)  # threads land on the fastest cores first
    assert "i8mm" in devs["android-flagship"].isa and "dotprod" not in devs["rpi4"].isa


def test_every_known_broken_entry_has_a_reason():
    n = 0
    for d in load_all():
        for kb in d.known_broken:
            n += 1
            assert kb.reason.strip() and len(kb.reason) > 20, (d.name, kb)
            assert kb.match
    assert n >= 3
    rpi4 = load_device("rpi4")
    assert rpi4.broken_for({"quantization": "fp16", "runtime": "onnxruntime"})
    assert not rpi4.broken_for({"quantization": "int8", "runtime": "onnxruntime"})


def _copy(tmp_path, name="rpi4"):
    d = tmp_path / "devices"
    d.mkdir(exist_ok=True)
    shutil.copy(DEVICES_DIR / f"{name}.yaml", d / f"{name}.yaml")
    return d / f"{name}.yaml"


def _edit(path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_unknown_key_is_rejected_naming_file_and_key(tmp_path):
    p = _copy(tmp_path)
    _edit(p, lambda d: d.update(max_freq=2.0))
    with pytest.raises(DeviceError, match=r"unknown config key '.*rpi4\.yaml: max_freq'"):
        load_device_file(p)


def test_unknown_nested_key_is_rejected(tmp_path):
    p = _copy(tmp_path)
    _edit(p, lambda d: d["clusters"][0].update(freq_ghz=1.5))
    with pytest.raises(DeviceError, match=r"unknown config key '.*rpi4\.yaml: clusters\[0\]\.freq_ghz'"):
        load_device_file(p)


def test_missing_field_is_rejected(tmp_path):
    p = _copy(tmp_path)
    _edit(p, lambda d: d.pop("mem_bandwidth_gbs"))
    with pytest.raises(DeviceError, match=r"rpi4\.yaml.*mem_bandwidth_gbs: missing"):
        load_device_file(p)
    p = _copy(tmp_path)
    _edit(p, lambda d: d["clusters"][0].pop("max_ghz"))
    with pytest.raises(DeviceError, match=r"clusters\[0\]\.max_ghz: missing"):
        load_device_file(p)


@pytest.mark.parametrize("edit,pattern", [
    (lambda d: d.update(threads=16), "threads"),
    (lambda d: d.update(isa=["neon", "avx9"]), "avx9"),
    (lambda d: d.update(runtime="tensorrt"), "runtime"),
    (lambda d: d.update(ram_gb="lots"), "ram_gb: expected a number"),
    (lambda d: d.update(name="rpi9"), "must equal the file name"),
    (lambda d: d["known_broken"][0].update(reason=" "), r"known_broken\[0\]\.reason"),
    (lambda d: d["known_broken"][0]["match"].update(colour="red"), "unknown key 'colour'"),
])
def test_bad_values_are_rejected(tmp_path, edit, pattern):
    p = _copy(tmp_path)
    _edit(p, edit)
    with pytest.raises(DeviceError, match=pattern):
        load_device_file(p)


def test_unknown_device_lists_known_ones():
    with pytest.raises(DeviceError, match="Unknown device 'toaster'. Known: .*rpi4"):
        load_device("toaster")
    assert "rpi5" in list_devices()
