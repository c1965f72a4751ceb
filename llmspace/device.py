"""Device choice (CUDA, Apple MPS, else CPU) and advice for small GPUs.

The roadmap's learners often have a small laptop GPU (it names an RTX 3050,
4-6 GB); ``llmspace info`` reports what fits there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class DeviceInfo:
    device: str  # "cuda" | "mps" | "cpu"
    name: str
    total_memory_gb: float | None
    free_memory_gb: float | None
    bf16: bool
    advice: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference != "auto":
        if preference == "cuda" and not torch.cuda.is_available():
            from llmspace.errors import ConfigError

            raise ConfigError("LLMSPACE_DEVICE=cuda but no CUDA GPU is visible. Use `auto` or `cpu`.", param="device")
        if preference == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            from llmspace.errors import ConfigError

            raise ConfigError("LLMSPACE_DEVICE=mps but Apple MPS is not available. Use `auto` or `cpu`.", param="device")
        return preference
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, preference: str = "auto"):
    """fp32 on CPU (fastest there for small models), bf16 on GPUs that have it, else fp16."""
    import torch

    if preference != "auto":
        return getattr(torch, preference)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def advice_for(total_gb: float | None, device: str) -> list[str]:
    """Which model sizes and methods fit, from a rule of thumb:
    inference ≈ 2 bytes/param (fp16), LoRA ≈ 2.5-3x that with activations,
    QLoRA ≈ 0.7 bytes/param + overhead."""
    if device == "cpu" or total_gb is None:
        return [
            "CPU only: the 135M default runs fine; up to ~0.5B for chat, LoRA on <=135M for learning runs.",
            "Export to ONNX int8 (`llmspace export onnx --dtype q8`) for faster CPU inference.",
        ]
    tips = []
    if total_gb < 3:
        tips.append("< 3 GB: inference up to ~0.5B in fp16; LoRA on the 135M default.")
    elif total_gb < 7:  # RTX 3050 (4-6 GB) and friends
        tips.append("4-6 GB (e.g. RTX 3050): inference up to ~1.5B fp16; LoRA on 0.5B; QLoRA (4-bit) on 1.5B.")
    elif total_gb < 13:
        tips.append("8-12 GB: inference up to ~3B fp16; LoRA on 1.5B; QLoRA on 3-7B.")
    elif total_gb < 30:
        tips.append("16-24 GB: inference up to ~7B fp16 (or vLLM); LoRA on 3B; QLoRA on 7-14B.")
    else:
        tips.append(">= 32 GB: 7-14B fp16 inference with vLLM; LoRA on 7B; full fine-tune of <=1.5B.")
    tips.append("Start small: make it work on 0.5B-1.5B with LoRA/QLoRA, then scale up.")
    return tips


def cpu_name() -> str:
    """The CPU model (e.g. "AMD EPYC 9B14"), for `llmspace info` and benchmark headers."""
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(preference: str = "auto") -> DeviceInfo:
    import torch

    dev = pick_device(preference)
    if dev == "cuda":
        idx = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        free, total = torch.cuda.mem_get_info(idx)
        total_gb = round(total / 2**30, 2)
        return DeviceInfo("cuda", props.name, total_gb, round(free / 2**30, 2),
                          torch.cuda.is_bf16_supported(), advice_for(total_gb, "cuda"))
    if dev == "mps":
        return DeviceInfo("mps", "Apple GPU (MPS)", None, None, False, advice_for(8.0, "mps"))
    return DeviceInfo("cpu", cpu_name(), None, None, False, advice_for(None, "cpu"))
