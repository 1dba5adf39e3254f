"""Fused DiT blocks for fp32 CPU inference: one C++ call per block (kernels/csrc/fused_block.cpp).

At the few output tokens of a cached step, a Python DiT block spends a large share of its time
in operator dispatch (~40 small ops, each a Python call, an ATen dispatch and often a fresh
allocation) rather than arithmetic (docs/acceleration.md). The C++ block does the same math in ten calls: its elementwise work
(LayerNorm + modulation, QK RMS-norm + 3D RoPE + head layout, gated residuals) in three fused
loops, the linears as oneDNN brgemm micro-kernel tiles over weights packed once into panels
(`pack_panels`; no per-call primitive lookup), attention as the plain product where the score
matrix is small (ATen's flash kernel above that). The fused executor (kernels/executor.py) uses it
on every path — the cached step, the full uncached step and the context encoding — whenever the
blocks qualify (kernels/fused_weights.py), so the reference cache's speedup compares equals;
otherwise (training, autocast, quantized or hooked layers, other devices) it runs the model's
Python blocks (model/dit.py), which stay the reference the fused one is tested against.

The extension is compiled on first use with the system C++ compiler (`$CXX`, else g++ / c++;
`-O3 -march=native`; `$SEEDLING_MARCH`, e.g. `x86-64-v3`, targets another instruction set)
into `$SEEDLING_EXT_DIR` (default `~/.cache/seedling_studio/ext`), keyed by the source, the torch
version, the target and the CPU's instruction-set flags, and loaded with
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

from seedling.kernels.derived import PANELS_ATTR, version_key

SOURCE = Path(__file__).with_name("csrc") / "fused_block.cpp"
OP_NAME = "dit_blocks"

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


def _march() -> str:
    return os.environ.get("SEEDLING_MARCH") or "native"


def _command(cxx: str, out: Path) -> list[str]:
    from torch.utils.cpp_extension import include_paths, library_paths

    libdir = library_paths()[0]
    return [
        cxx, "-O3", f"-march={_march()}", "-fopenmp", "-fPIC", "-shared", "-std=c++20",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        *[f"-I{p}" for p in include_paths()],
        str(SOURCE), "-o", str(out),
        f"-L{libdir}", "-lc10", "-ltorch_cpu", "-ltorch", f"-Wl,-rpath,{libdir}",
    ]


def library_path() -> Path:
    """Where the built extension for this source, torch and CPU lives."""
    key = hashlib.sha256(
        b"\0".join([SOURCE.read_bytes(), torch.__version__.encode(), _cpu_flags().encode(),
                    platform.machine().encode(), _march().encode()])
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
            _self_test()
        except (OSError, RuntimeError) as err:
            raise FusedBuildError(f"loading {path} failed: {err}") from err
        _state["loaded"] = True


def _self_test() -> None:
    """One small product against F.linear: the brgemm micro-kernels exist and agree on this CPU."""
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(70, 48, generator=g), torch.randn(128, 48, generator=g), torch.randn(128, generator=g)
    with torch.no_grad():
        got = torch.ops.seedling.panel_linear(x, pack_panels(w), b, False)
        want = torch.nn.functional.linear(x, w, b)
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
        raise RuntimeError(f"self-test: panel_linear differs from F.linear by {(got - want).abs().max().item():.2e}")


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
    old = enabled()
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(old)


def last_error() -> str | None:
    return _state["error"]


def panel_width(n_out: int) -> int | None:
    """Output columns per weight panel: 128 for wide layers, else 64 (the fastest for the DiT's
    256- and 768-wide layers in bench/bench_panel_linear.py), else the largest of 32 / 16 that divides; None if none does."""
    for nb in ((128, 64, 32, 16) if n_out >= 1024 else (64, 32, 16)):
        if n_out % nb == 0:
            return nb
    return None


def pack_panels(weight: torch.Tensor) -> torch.Tensor | None:
    """A linear weight (N, K) as (N / nb, K, nb) panels of W^T: the layout panel_linear's brgemm
    tiles read contiguously. None if N has no usable panel width."""
    N, K = weight.shape
    nb = panel_width(N)
    if nb is None:
        return None
    return weight.detach().t().reshape(K, N // nb, nb).permute(1, 0, 2).contiguous()


def panel_weight(linear: torch.nn.Module) -> torch.Tensor | None:
    """`pack_panels(linear.weight)`, kept on the layer and rebuilt when the weight changes (keyed like
    kernels/packed.py: the parameter, its storage and its version counter)."""
    key = version_key(linear.weight)
    cached = linear.__dict__.get(PANELS_ATTR)
    if cached is not None and cached[0] == key:
        return cached[1]
    with torch.no_grad():
        panels = pack_panels(linear.weight)
    linear.__dict__[PANELS_ATTR] = (key, panels)
    return panels


def panel_linear(x, panels, bias, gelu: bool = False):
    """`x @ W.T + bias` (then the tanh GELU if asked) from `pack_panels(W)`, as the fused block runs it."""
    return torch.ops.seedling.panel_linear(x, panels, bias, gelu)


def attention(q, k, v, n_ctx: int = 0):
    """The fused blocks' attention: (B, H, L, Dh) q, k, v; query rows < n_ctx attend to keys < n_ctx
    only (the DiT's structured mask), the others to all (n_ctx = 0: plain attention)."""
    return torch.ops.seedling.attention(q, k, v, n_ctx)


def dit_blocks(x, table, table_ctx, n_ctx: int, weights: list, cos, sin, kbufs: list, vbufs: list, mode: str,
               eps_ln: float, eps_rms: float):
    """Every block in one call (fused_block.cpp, `blocks`; the modes are described at `block`):
    `weights` the blocks' lists
    concatenated, `table` (B, depth, 6, D). Returns [x] ("full", "outputs") or
    [x, k_0, v_0, ...] ("context")."""
    return torch.ops.seedling.dit_blocks(x, table, table_ctx, n_ctx, weights, cos, sin, kbufs, vbufs, mode,
                                         eps_ln, eps_rms)
