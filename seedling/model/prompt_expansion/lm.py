"""A local causal language model as the expander's rewriter (Seedream uses a VLM here).

The user points to a folder that transformers can load offline (`AutoTokenizer` +
`AutoModelForCausalLM`, e.g. a small instruct model they downloaded). The LM rewrites what the
grounded expander could not pass through; the grounded expander stays the floor:

- in-vocabulary prompts pass through without running the LM (adaptive budget);
- the LM's rewrite is used when it is itself a training caption of the task, or when the
  grounded expansion of the typed prompt failed and the rewrite grounds;
- otherwise the grounded expansion is used, with a note showing what the LM wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

from seedling.model.prompt_expansion.grounded import GroundedExpander
from seedling.model.prompt_expansion.result import PASSTHROUGH, ExpansionResult

_INSTRUCTIONS = (
    "Rewrite the request as one short caption for a small image model. It knows emoji icons by name "
    "('a fox', 'the flag of japan'), shape scenes ('two red circles at the top left and on the right'), "
    "words ('the word \"open\"'), bar charts ('a bar chart with values 3, 5, 2'), storyboards ('a storyboard "
    "of a cat: on a green background, then on a purple background') and edits ('make the red circle blue'). "
    "Answer with the caption only."
)
_EXAMPLES = (
    ("a cheerful fox waving", "a fox"),
    ("a crimson ball in the upper left corner", "a red circle at the top left"),
    ('a sign reading "open"', 'the word "open"'),
)


class CausalLMExpander:
    """Expander backed by a local causal LM folder, grounded by `grounded` (see the module doc)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        grounded: GroundedExpander,
        max_new_tokens: int = 32,
        device: str = "cpu",
    ):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"{folder} is not a transformers model folder (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = (
            AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval().to(device)
        )
        self.grounded = grounded
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.name = f"lm:{folder.name}"

    def _prompt(self, prompt: str, task: str, hints: list[str]) -> str:
        hint = f" Closest known subjects: {', '.join(hints)}." if hints else ""
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": _INSTRUCTIONS + hint}]
            for q, a in _EXAMPLES:
                messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            messages.append({"role": "user", "content": f"({task}) {prompt}"})
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        shots = "".join(f"Request: {q}\nCaption: {a}\n" for q, a in _EXAMPLES)
        return f"{_INSTRUCTIONS}{hint}\n{shots}Request: ({task}) {prompt}\nCaption:"

    def rewrite(self, prompt: str, task: str = "t2i", hints: list[str] | None = None) -> str:
        """The LM's caption for `prompt`: greedy, first line, without quotes around it."""
        import torch

        text = self._prompt(prompt, task, hints or [])
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)
        limit = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", 2048
        )
        if enc["input_ids"].shape[1] + self.max_new_tokens > limit:  # keep the end: the request is there
            keep = max(1, limit - self.max_new_tokens)
            enc = {k: v[:, -keep:] for k, v in enc.items()}
        pad = self.tokenizer.pad_token_id
        eos = (
            self.tokenizer.eos_token_id
            if self.tokenizer.eos_token_id is not None
            else self.tokenizer.sep_token_id
        )
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad if pad is not None else eos,
                eos_token_id=eos,
            )
        new = self.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        line = next((ln for ln in new.strip().splitlines() if ln.strip()), "")
        return line.strip().strip("'`").strip()

    def expand(
        self, prompt: str, task: str = "t2i", num_outputs: int | None = None, n_refs: int | None = None
    ) -> ExpansionResult:
        base = self.grounded.expand(prompt, task, num_outputs, n_refs)
        base.expander = self.name
        if base.budget == PASSTHROUGH:
            return base
        hints = [m.value for m in base.matches if m.kind in ("icon", "shape") and m.value][:3]
        rewrite = self.rewrite(prompt, task, hints)
        lm_note = f"{self.name} wrote: '{rewrite}'."
        if rewrite:
            cand = self.grounded.expand(rewrite, task, num_outputs, n_refs)
            if cand.grounded and (self.grounded.recognize(rewrite, task) or not base.grounded):
                cand.typed, cand.expander, cand.seconds = prompt, self.name, base.seconds + cand.seconds
                cand.notes = [f"Rewritten by {self.name}."] + cand.notes
                return cand
        base.notes = base.notes + [lm_note + " Not a caption the model knows: using the grounded expansion."]
        return base
