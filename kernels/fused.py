"""Fused DiT blocks for fp32 CPU inference: one C++ call per block (kernels/csrc/fused_block.cpp).

At the 64 output tokens of a cached 128x128 step, a Python DiT block costs about as much in
operator dispatch (~40 small ops, each a Python call, an ATen dispatch and often a fresh
allocation) as in arithmetic. The C++ block does the same math in ten calls: its elementwise work
(LayerNorm + modulation, QK RMS-norm + 3D RoPE + head layout, gated residuals) in three fused
loops, the linears through oneDNN with the weights `PackedLinear` already packed, attention
through ATen's CPU flash kernel. model/dit.py uses it on every path — the cached step, the full
uncached step and the context encoding — whenever `usable(...)` holds, so the reference cache's
speedup compares equals; otherwise (training, autocast, quantized or hooked layers, other devices)
it runs its Python blocks, which stay the reference the fused one is tested against.

The extension is compiled on first use with the system C++ compiler (`$CXX`, else g++ / c++;
~10 s, `-O3 -march=native`) into `$SEEDLING_EXT_DIR` (default `~/.cache/seedling_studio/ext`),
keyed by the source, the torch version and the CPU's instruction-set flags, and loaded with
`torch.ops.load_library`. Where no compiler is found or the build fails, `available()` is False,
a single warning says why, and everything runs the Python blocks. `SEEDLING_FUSED=0` (or
`set_enabled(False)`) turns the fused blocks off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "fused_block.cpp"
OP_NAME = "dit_block"

_lock = threading.Lock()
_state: dict = {"loaded": None, "error": None, "enabled": os.environ.get("SEEDLING_FUSED", "1") != "0"}


class FusedBuildError(RuntimeError):
    """The C++ block could not be compiled or loaded."""


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _command(cxx: str, out: Path) -> list[str]:
    from torch.utils.cpp_extension import include_paths, library_paths

    libdir = library_paths()[0]
    return [
        cxx, "-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c++20",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        *[f"-I{p}" for p in include_paths()],
        str(SOURCE), "-o", str(out),
        f"-L{libdir}", "-lc10", "-ltorch_cpu", "-ltorch", f"-Wl,-rpath,{libdir}",
    ]


def library_path() -> Path:
    """Where the built extension for this source, torch and CPU lives."""
    key = hashlib.sha256(
        b"\0".join([SOURCE.read_bytes(), torch.__version__.encode(), _cpu_flags().encode(), platform.machine().encode()])
    ).hexdigest()[:16]
    root = Path(os.environ.get("SEEDLING_EXT_DIR") or Path.home() / ".cache" / "seedling_studio" / "ext")
    return root / f"seedling_fused_{key}.so"


def build(force: bool = False) -> Path:
    """Compile the extension (if not already built) and return its path. Raises FusedBuildError."""
    target = library_path()
    if target.exists() and not force:
        return target
    cxx = _compiler()
    if cxx is None:
        raise FusedBuildError("no C++ compiler found (set $CXX or install g++)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # build beside the target and rename: concurrent builders (several workers) never load a half file
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(_command(cxx, Path(tmp)), capture_output=True, text=True)
        if proc.returncode != 0:
            raise FusedBuildError(f"compiling {SOURCE.name} failed:\n{proc.stderr[-3000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load() -> None:
    """Build if needed and load the op into torch.ops.seedling. Raises FusedBuildError."""
    with _lock:
        if _state["loaded"]:
            return
        if _has_namespace():  # loaded already (e.g. by an earlier import of the same library)
            _state["loaded"] = True
            return
        path = build()
        try:
            torch.ops.load_library(str(path))
        except (OSError, RuntimeError) as err:
            raise FusedBuildError(f"loading {path} failed: {err}") from err
        _state["loaded"] = True


def _has_namespace() -> bool:
    try:
        return hasattr(torch.ops.seedling, OP_NAME)
    except (AttributeError, RuntimeError):
        return False


def available() -> bool:
    """The fused block can run here (built and loaded, or built now) and is enabled."""
    if not _state["enabled"]:
        return False
    if _state["loaded"]:
        return True
    if _state["error"] is not None:
        return False
    try:
        load()
        return True
    except FusedBuildError as err:
        _state["error"] = str(err)
        warnings.warn(f"fused DiT blocks unavailable, using the Python blocks: {err}", RuntimeWarning, stacklevel=2)
        return False


def set_enabled(flag: bool) -> None:
    """Turn the fused blocks on or off for this process (off: the Python blocks everywhere)."""
    _state["enabled"] = bool(flag)


def enabled() -> bool:
    return _state["enabled"]


@contextmanager
def disabled():
    """Run the Python blocks inside the `with` (e.g. to compare against them)."""
    old = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = old


def last_error() -> str | None:
    return _state["error"]


def dit_block(x, mo, mc, n_ctx: int, weights: list, cos, sin, kbuf, vbuf, mode: str, eps_ln: float, eps_rms: float):
    """One DiT block (see fused_block.cpp for the modes). Returns a list of tensors."""
    return torch.ops.seedling.dit_block(x, mo, mc, n_ctx, weights, cos, sin, kbuf, vbuf, mode, eps_ln, eps_rms)


def dit_blocks(x, table, table_ctx, n_ctx: int, weights: list, cos, sin, kbufs: list, vbufs: list, mode: str,
               eps_ln: float, eps_rms: float):
    """Every block in one call (fused_block.cpp, `blocks`): `weights` the blocks' lists
    concatenated, `table` (B, depth, 6, D). Returns [x] ("full", "outputs") or
    [x, k_0, v_0, ...] ("context")."""
    return torch.ops.seedling.dit_blocks(x, table, table_ctx, n_ctx, weights, cos, sin, kbufs, vbufs, mode,
                                         eps_ln, eps_rms)
