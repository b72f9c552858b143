"""The machine a study is planned for: CPU or CUDA, and how much GPU memory."""

from __future__ import annotations

from dataclasses import dataclass

from automl.errors import ConfigError

# Planned for when `--device cuda` is asked on a machine that shows no GPU (planning elsewhere
# for a GPU machine): a common 16 GiB card; the plan says so.
ASSUMED_GPU_GIB = 16.0


@dataclass(frozen=True)
class Machine:
    device: str  # "cpu" or "cuda" (the study file's device)
    gpu_gib: float | None = None  # CUDA: memory of GPU 0
    # how the device was chosen, in words ("--device auto: no GPU visible")
    why: str = ""

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def detect_machine(device: str = "auto") -> Machine:
    """``device``: auto (CUDA when a GPU is visible, else CPU), cpu or cuda."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: give auto, cpu or cuda")
    import torch

    visible = torch.cuda.is_available()
    if device == "cpu" or device == "auto" and not visible:
        why = "--device cpu" if device == "cpu" else "--device auto: no GPU visible"
        return Machine("cpu", why=why)
    if not visible:
        return Machine("cuda", ASSUMED_GPU_GIB,
                       f"--device cuda, but no GPU is visible here: planned for a {ASSUMED_GPU_GIB:g} GiB GPU")
    props = torch.cuda.get_device_properties(0)
    why = "--device cuda" if device == "cuda" else "--device auto: a GPU is visible"
    return Machine("cuda", props.total_memory / 2**30, f"{why} ({props.name}, {props.total_memory / 2**30:.0f} GiB)")
