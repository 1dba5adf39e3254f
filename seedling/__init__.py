"""Seedling Studio: one import root for the project's code.

The design card's parts live one level down: `seedling.ui`, `seedling.backend`,
`seedling.model`, `seedling.storage`, `seedling.kernels`. Generic top-level names such as
`kernels` or `model` would shadow distributions our dependencies import (transformers 5 imports
Hugging Face's `kernels`), so nothing of ours is importable at the top level but `seedling`.
"""

from pathlib import Path

__version__ = "0.2.0"

# The repository root of a checkout (editable install): where assets/ lives.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "assets" / "default"
