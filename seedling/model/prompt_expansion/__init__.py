"""Prompt expansion (PE): from what a designer types to what the model understands.

    from seedling.model.prompt_expansion import load_expander
    pe = load_expander(text_encoder=pipe.text_encoder)          # the grounded expander
    res = pe.expand("a cheerful fox waving", task="t2i")
    res.prompt            # 'a fox'
    res.grounded          # False: nothing close in the vocabulary, say so instead of drawing noise
    res.matches, res.notes, res.suggestion, res.budget

`load_expander(lm_folder=...)` puts a local causal LM (transformers, offline) in front of the
grounded expander. See docs/prompt_expansion.md.
"""

from __future__ import annotations

from seedling.model.prompt_expansion.result import (
    DECOMPOSE,
    PASSTHROUGH,
    REWRITE,
    ExpansionResult,
    Match,
    PromptExpander,
    Suggestion,
)


def load_expander(lm_folder=None, text_encoder=None, cache_dir=None) -> PromptExpander:
    """The grounded expander, or, with `lm_folder`, a local causal LM grounded by it."""
    from seedling.model.prompt_expansion.grounded import GroundedExpander

    grounded = GroundedExpander(text_encoder=text_encoder, cache_dir=cache_dir)
    if lm_folder is None:
        return grounded
    from seedling.model.prompt_expansion.lm import CausalLMExpander

    return CausalLMExpander(lm_folder, grounded)


__all__ = [
    "DECOMPOSE",
    "PASSTHROUGH",
    "REWRITE",
    "ExpansionResult",
    "Match",
    "PromptExpander",
    "Suggestion",
    "load_expander",
]
