"""Hardware profiles: declared data, the detected machine, and the match between them.

Costs are only comparable within a profile, so every record carries the profile id and the
detected fingerprint, and the runner refuses a machine that does not match its profile unless
told otherwise (the record then says the match failed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import psutil

from .errors import ConfigError, ProfileError
from .typedload import from_data, load_yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Range:
    min: float
    max: float

    def __contains__(self, x: float) -> bool:
        return self.min <= x <= self.max


@dataclass(frozen=True)
class CpuDecl:
    logical_cores: int


@dataclass(frozen=True)
class AcceleratorDecl:
    vendor: str
    model: str
    count: int
    memory_gib: Range | None = None


@dataclass(frozen=True)
class Threads:
    torch: int
    interop: int = 1


@dataclass(frozen=True)
class Profile:
    id: str
    description: str
    device: str
    cpu: CpuDecl
    memory_gib: Range
    accelerator: AcceleratorDecl | None
    threads: Threads
    peak: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    logical_cores: int
    memory_gib: float
    accelerators: tuple[str, ...]
    accelerator_memory_gib: tuple[float, ...]
    os: str
    python: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


PROFILE_DIR_ENV = "SPARSEBENCH_PROFILE_DIR"


def load_profiles(extra_dir: Path | None = None) -> dict[str, Profile]:
    """The built-in profiles plus those in `extra_dir` (default: $SPARSEBENCH_PROFILE_DIR), so a
    user can declare their machine without editing the installed package."""
    if extra_dir is None and os.environ.get(PROFILE_DIR_ENV):
        extra_dir = Path(os.environ[PROFILE_DIR_ENV])
    if extra_dir is not None and not extra_dir.is_dir():
        raise ConfigError(f"{extra_dir}: profile directory does not exist (from {PROFILE_DIR_ENV} or the caller)")
    dirs = [Path(str(files("sparsebench.profiles")))] + ([extra_dir] if extra_dir else [])
    out: dict[str, Profile] = {}
    origin: dict[str, Path] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            prof = from_data(Profile, load_yaml(path), str(path))
            if prof.id != path.stem:
                raise ConfigError(f"{path}: id {prof.id!r} must equal the file name {path.stem!r}")
            if prof.id in out:
                raise ConfigError(f"{path}: profile {prof.id!r} is already declared in {origin[prof.id]}; choose another id")
            _check_ranges(prof, path)
            out[prof.id] = prof
            origin[prof.id] = path
    return out


def _check_ranges(prof: Profile, path: Path) -> None:
    """Values the loader's types admit but no machine has: each would silently misconfigure runs."""
    if prof.device not in ("cpu", "cuda"):
        raise ConfigError(f"{path}: device: {prof.device!r} is not one of 'cpu', 'cuda'")
    checks = [
        ("cpu.logical_cores", prof.cpu.logical_cores, prof.cpu.logical_cores >= 1, "at least 1"),
        ("threads.torch", prof.threads.torch, prof.threads.torch >= 1, "at least 1"),
        ("threads.interop", prof.threads.interop, prof.threads.interop >= 1, "at least 1"),
        ("memory_gib.min", prof.memory_gib.min, 0 <= prof.memory_gib.min <= prof.memory_gib.max, "between 0 and memory_gib.max"),
    ]
    acc = prof.accelerator
    if acc is not None:
        checks.append(("accelerator.count", acc.count, acc.count >= 1, "at least 1 (or accelerator: null)"))
        if acc.memory_gib is not None:
            m = acc.memory_gib
            checks.append(("accelerator.memory_gib.min", m.min, 0 <= m.min <= m.max, "between 0 and accelerator.memory_gib.max"))
    checks += [(f"peak.{k}", v, v is None or (math.isfinite(v) and v > 0), "a positive number or null") for k, v in prof.peak.items()]
    for key, value, ok, what in checks:
        if not ok:
            raise ConfigError(f"{path}: {key}: {value!r} is out of range (must be {what})")


def detect(with_accelerators: bool = True) -> Machine:
    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    names: list[str] = []
    mems: list[float] = []
    if with_accelerators:
        names, mems = _cuda_devices()
    return Machine(
        cpu_model=cpu_model,
        logical_cores=cores,
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        accelerators=tuple(names),
        accelerator_memory_gib=tuple(mems),
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
    )


def _cuda_devices() -> tuple[list[str], list[float]]:
    # nvidia-smi first: it answers without torch, which set-up installs as a CPU build that
    # cannot see a GPU even where one is present.
    smi = _nvidia_smi_devices()
    if smi is not None:
        return smi
    # Else torch's CUDA probe (the one the methods use); skip its import cost when no driver.
    if not Path("/proc/driver/nvidia").exists() and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return [], []
    try:
        import torch

        if not torch.cuda.is_available():
            return [], []
        props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        return [p.name for p in props], [round(p.total_memory / 2**30, 1) for p in props]
    except Exception as e:  # a broken driver is a machine without a usable accelerator
        log.warning("CUDA probe failed: %s", e)
        return [], []


def _nvidia_smi_devices() -> tuple[list[str], list[float]] | None:
    """(names, memory GiB) from nvidia-smi, or None when it is absent or fails."""
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
        return parse_nvidia_smi(out)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        log.warning("nvidia-smi failed (%s); probing CUDA through torch", e)
        return None


def parse_nvidia_smi(out: str) -> tuple[list[str], list[float]]:
    """`nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` (MiB) -> names, GiB.

    Visible devices only: CUDA_VISIBLE_DEVICES (indices) narrows the list as CUDA would."""
    names, mems = [], []
    for line in out.strip().splitlines():
        name, _, mib = line.rpartition(",")
        if not name.strip():
            raise ValueError(f"unexpected nvidia-smi line {line!r}")
        names.append(name.strip())
        mems.append(round(float(mib) / 1024, 1))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        keep = [int(i) for i in visible.split(",") if i.strip().isdigit() and int(i) < len(names)]
        names, mems = [names[i] for i in keep], [mems[i] for i in keep]
    return names, mems


def mismatches(profile: Profile, m: Machine) -> list[str]:
    """Human-readable reasons the machine is not the declared profile; empty when it is."""
    out = []
    if m.logical_cores != profile.cpu.logical_cores:
        out.append(f"{m.logical_cores} logical cores, profile declares {profile.cpu.logical_cores}")
    if m.memory_gib not in profile.memory_gib:
        out.append(f"{m.memory_gib} GiB memory, profile declares {profile.memory_gib.min}-{profile.memory_gib.max}")
    acc = profile.accelerator
    if acc is None and m.accelerators:
        out.append(f"accelerators present ({', '.join(m.accelerators)}), profile declares none")
    if acc is not None:
        matching = [n for n in m.accelerators if acc.model.lower() in n.lower()]
        if len(matching) != acc.count:
            out.append(f"{len(matching)} {acc.vendor} {acc.model} found ({', '.join(m.accelerators) or 'none'}), profile declares {acc.count}")
        elif acc.memory_gib is not None:
            bad = [g for n, g in zip(m.accelerators, m.accelerator_memory_gib) if acc.model.lower() in n.lower() and g not in acc.memory_gib]
            if bad:
                out.append(f"accelerator memory {bad[0]} GiB outside {acc.memory_gib.min}-{acc.memory_gib.max}")
    return out


@dataclass(frozen=True)
class ProfileMatch:
    profile: Profile
    machine: Machine
    problems: tuple[str, ...]

    @property
    def matched(self) -> bool:
        return not self.problems

    def stamp(self) -> dict[str, Any]:
        return {
            "id": self.profile.id,
            "matched": self.matched,
            "mismatches": list(self.problems),
            "fingerprint": self.machine.fingerprint,
            "machine": asdict(self.machine),
            "threads": asdict(self.profile.threads),
        }


def choose_profile(requested: str | None, allow_mismatch: bool, extra_dir: Path | None = None) -> ProfileMatch:
    profiles = load_profiles(extra_dir)
    machine = detect()
    if requested is not None:
        if requested not in profiles:
            raise ProfileError(f"unknown profile {requested!r} (declared: {', '.join(sorted(profiles))})")
        problems = mismatches(profiles[requested], machine)
        if problems and not allow_mismatch:
            raise ProfileError(
                f"this machine does not match profile {requested!r}: {'; '.join(problems)}. "
                "Run under the matching profile (bench profile lists them), declare one for this machine, "
                "or pass --profile-mismatch=allow to run anyway with records marked as mismatched"
            )
        return ProfileMatch(profiles[requested], machine, tuple(problems))
    for prof in profiles.values():
        if not mismatches(prof, machine):
            return ProfileMatch(prof, machine, ())
    raise ProfileError(
        f"no declared profile matches this machine ({machine.logical_cores} cores, {machine.memory_gib} GiB, "
        f"accelerators: {', '.join(machine.accelerators) or 'none'}). Add a YAML profile under sparsebench/profiles/ "
        "or pass --profile ID --profile-mismatch=allow"
    )


def apply_threads(threads: Threads) -> None:
    """Fix thread counts before any heavy library starts its pools (recorded on every record).

    Environment variables, not torch calls, so a method that never imports torch (BM25) does not
    pay torch's import in its memory and time; torch reads OMP_NUM_THREADS when it starts.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads.torch)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import sys

    if "torch" in sys.modules:  # in-process runs: torch is already up, set it directly
        torch = sys.modules["torch"]
        torch.set_num_threads(threads.torch)
        try:
            torch.set_num_interop_threads(threads.interop)
        except RuntimeError:
            pass  # fixed once parallel work has started; only the in-process debug mode gets here


def threads_in_use() -> dict[str, int | None]:
    import sys

    torch = sys.modules.get("torch")
    return {
        "torch_intra_op": torch.get_num_threads() if torch else None,
        "torch_inter_op": torch.get_num_interop_threads() if torch else None,
    }
