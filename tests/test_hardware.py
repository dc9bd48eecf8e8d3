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


def test_the_lent_h200_matches_its_profile_and_not_the_h100_one(monkeypatch) -> None:
    # What nvidia-smi printed on the lent machine (name, MiB), read without torch.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    names, mems = hardware.parse_nvidia_smi("NVIDIA H200, 143771\n")
    assert names == ["NVIDIA H200"] and mems == [140.4]
    h200 = machine(logical_cores=16, memory_gib=125.8, accelerators=tuple(names), accelerator_memory_gib=tuple(mems))
    p = hardware.load_profiles()
    assert hardware.mismatches(p["h200-x1"], h200) == []
    assert any("H100" in m for m in hardware.mismatches(p["h100-x1"], h200))


def test_nvidia_smi_output_follows_cuda_visible_devices(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert hardware.parse_nvidia_smi("NVIDIA A100-SXM4-80GB, 81920\nNVIDIA H200, 143771\n") == (["NVIDIA H200"], [140.4])
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        hardware.parse_nvidia_smi("143771\n")


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
