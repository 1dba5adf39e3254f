"""Seedling Studio kernels: attention backends and quantized linear layers.

Import the submodules directly (`from kernels.quant import quantize`); this file imports
nothing, so that importing the package stays free.

Name clash with the Hugging Face `kernels` package
---------------------------------------------------
The Hugging Face hub-kernel loader is a PyPI package also imported as `kernels`. bitsandbytes
(0.50, `bitsandbytes/backends/cpu/ops.py`, run at `import bitsandbytes` on CPUs with
AVX512-BF16) does

    try:
        from kernels import get_kernel
        gemm_4bit_forward_kernel = get_kernel("kernels-community/quantization-bitsandbytes", ...)
    except Exception:
        gemm_4bit_forward_kernel = None   # falls back to its own C kernel for NF4/FP4

Run from the repository root, that import finds this package. Without this file's
`__getattr__` it would fail with `ImportError: cannot import name 'get_kernel'`, which
bitsandbytes happens to swallow too; with it, asking for any name of the Hugging Face API
raises `ModuleNotFoundError`, exactly what a missing package raises, so every caller that
handles "package not installed" (`except ImportError` or broader) takes that path. Never
define any of these names here: bitsandbytes would call them as the Hub loader.
transformers and diffusers look the package up through its installed distribution
metadata, which this folder has none of, so they are not reached at all.
`tests/test_quant.py` checks both facts.
"""

# Public names of the Hugging Face `kernels` package (0.x) that libraries import from it.
_HF_KERNELS_API = frozenset(
    {
        "CUDAProperties",
        "Device",
        "FuncRepository",
        "KernelizeFallback",
        "LayerRepository",
        "LocalLayerRepository",
        "LockedLayerRepository",
        "Mode",
        "ROCMProperties",
        "get_kernel",
        "get_local_kernel",
        "get_locked_kernel",
        "has_kernel",
        "install_kernel",
        "kernelize",
        "load_kernel",
        "register_kernel_mapping",
        "replace_kernel_forward_from_hub",
        "use_kernel_forward_from_hub",
        "use_kernel_mapping",
        "use_kernelized_func",
    }
)


def __getattr__(name: str):
    # Only the Hugging Face names raise ModuleNotFoundError: `from kernels import attention`
    # goes through hasattr(), which must still see AttributeError for a not-yet-imported
    # submodule so that Python goes on to import it.
    if name in _HF_KERNELS_API:
        raise ModuleNotFoundError(
            f"No module named 'kernels' providing {name!r}: this 'kernels' is Seedling Studio's "
            "own package, not the Hugging Face hub-kernel loader",
            name="kernels",
        )
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
