import pytest

from sparsebench import hardware
from sparsebench.errors import ProfileError


def machine(**kw) -> hardware.Machine:
    base = dict(cpu_model="x", logical_cores=2, memory_gib=23.5, accelerators=(), accelerator_memory_gib=(), os="Linux", python="3.11")
    return hardware.Machine(**{**base, **kw})


def test_declared_profiles() -> None:
    profiles = hardware.load_profiles()
    assert {"cpu-2core", "h100-x1"} <= set(profiles)
    assert profiles["h100-x1"].accelerator.model == "H100"


def test_matching_rules() -> None:
    p = hardware.load_profiles()
    assert hardware.mismatches(p["cpu-2core"], machine()) == []
    assert "16 logical cores" in hardware.mismatches(p["cpu-2core"], machine(logical_cores=16))[0]
    h100 = machine(logical_cores=16, memory_gib=125.0, accelerators=("NVIDIA H100 80GB HBM3",), accelerator_memory_gib=(79.1,))
    assert hardware.mismatches(p["h100-x1"], h100) == []
    assert hardware.mismatches(p["cpu-2core"], h100)
    a100 = machine(logical_cores=16, memory_gib=125.0, accelerators=("NVIDIA A100-SXM4-80GB",), accelerator_memory_gib=(79.1,))
    assert any("H100" in m for m in hardware.mismatches(p["h100-x1"], a100))


def test_refusal_and_override(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "detect", lambda with_accelerators=True: machine(logical_cores=8))
    with pytest.raises(ProfileError, match="no declared profile matches"):
        hardware.choose_profile(None, False)
    with pytest.raises(ProfileError, match="--profile-mismatch=allow"):
        hardware.choose_profile("cpu-2core", False)
    allowed = hardware.choose_profile("cpu-2core", True)
    assert not allowed.matched and allowed.stamp()["mismatches"]
    with pytest.raises(ProfileError, match="unknown profile"):
        hardware.choose_profile("tpu", True)


def test_stamp_of_this_machine() -> None:
    m = hardware.detect()
    assert m.logical_cores >= 1 and len(m.fingerprint) == 16
