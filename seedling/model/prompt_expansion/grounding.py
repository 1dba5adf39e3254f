"""Ground free-form subjects in the model's vocabulary with the MiniLM text encoder.

Every vocabulary entry (an icon noun as the captions say it, "a fox" / "the flag of canada";
an emoji alias such as "a kitty" -> "cat face" where the `emoji` package has one; the shape
nouns "a red circle") is embedded once: the sentence-transformers recipe for all-MiniLM-L6-v2
(mean of the token states over the real tokens, L2-normalised), the same pooling the pipeline
feeds its conditioning vector. The matrix is cached on disk under `cache/`, keyed by a hash of
the entry texts and the encoder, so a warm start reads 5 MB instead of running 3,000 encodings.

A subject is encoded in up to three forms in one batch: its whole phrase ("a kitten sitting
quietly"), its core without decorations and trailing context, and its head without participles
("a kitten"). When the whole phrase is confidently close to an entry it decides alone (so "a hand
waving hello" stays "waving hand"); otherwise an entry scores its best weighted cosine over the
forms. The best entry above the threshold grounds the subject; below it, the subject is "not
grounded", which the caller shows instead of generating noise.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seedling.atomic import write_atomic
from seedling.model.data import knowledge as kn
from seedling.model.data.captions import with_article
from seedling.model.prompt_expansion.vocab import Vocabulary

RECIPE = "minilm-mean-l2-v1"  # bump when the entry texts or the pooling change
GROUND_THRESHOLD = 0.55  # cosine; unrelated phrases score <= 0.45, paraphrases >= 0.6 (bench/bench_pe.py)
CONFIDENT = 0.7  # a whole phrase this close to an entry is taken as it is; shorter forms are not tried
ALIAS_PENALTY = 0.02  # an alias scores a little below the icon's own name on a tie
# Shorter forms of a subject drop words (the core: decorations and context; the head: also a
# participle, "kitten sitting quietly" -> "kitten"), so they are trusted a little less.
FORM_WEIGHTS = (1.0, 0.97, 0.92)


@dataclass(frozen=True)
class Entry:
    text: str  # what is embedded ("a fox")
    value: str  # the vocabulary item it names ("fox", or "red circle" for kind "shape")
    kind: str  # "icon" | "shape"
    alias: bool = False


@dataclass
class Grounding:
    phrase: str  # the subject as the prompt says it
    value: str | None  # the vocabulary item, None when nothing is close enough
    kind: str | None
    score: float  # best cosine similarity
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # next best items
    closest: str | None = None  # the best item even when below the threshold

    @property
    def grounded(self) -> bool:
        return self.value is not None


def vocabulary_entries(vocab: Vocabulary) -> list[Entry]:
    entries = [Entry(i.noun(), i.name, "icon") for i in vocab.icons]
    entries += [
        Entry(with_article(alias), name, "icon", alias=True) for alias, name in sorted(vocab.aliases.items())
    ]
    entries += [Entry(with_article(f"{c} {s}"), f"{c} {s}", "shape") for c in kn.COLORS for s in kn.SHAPES]
    return entries


@contextmanager
def torch_threads(n: int | None):
    """Run torch ops with `n` intra-op threads, then restore the previous count (None: unchanged)."""
    import torch

    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SentenceEncoder:
    """Normalised MiniLM sentence vectors from a `TextEncoder` (its tokenizer and model), with a
    per-text cache. Pads to the longest text of a batch, not to the DiT's text length.

    Queries run on one thread (`query_threads`): three short sentences through six layers gain
    nothing from intra-op parallelism, and on a busy machine a starved second thread stalls every
    op (measured while a training run used both cores: 2 threads 15 ms median with 600 ms
    spikes, 1 thread 6-25 ms). Vocabulary builds keep the process's thread count.
    """

    def __init__(self, text_encoder, cache_size: int = 4096, query_threads: int | None = 1):
        self.text_encoder = text_encoder
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = cache_size
        self.query_threads = query_threads

    @property
    def identity(self) -> str:
        model = self.text_encoder.model
        return (
            f"{type(model).__name__}:{getattr(model.config, '_name_or_path', '')}:{model.config.hidden_size}"
        )

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        te = self.text_encoder
        tok = te.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        tok = {k: v.to(te.device) for k, v in tok.items()}
        with torch.inference_mode():
            states = te.model(**tok).last_hidden_state.float()  # (B, L, 384)
        m = tok["attention_mask"].unsqueeze(-1).float()
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, 384)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()

    def encode(self, texts: list[str], batch: int = 256) -> np.ndarray:
        """(len(texts), 384) float32, unit rows."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        with torch_threads(self.query_threads):
            for i in range(0, len(missing), batch):
                chunk = missing[i : i + batch]
                for t, v in zip(chunk, self._encode(chunk)):
                    self._cache[t] = v
        out = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)
        for t in texts:
            self._cache.move_to_end(t)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def encode_uncached(self, texts: list[str], batch: int = 256) -> np.ndarray:
        return np.concatenate([self._encode(texts[i : i + batch]) for i in range(0, len(texts), batch)])


class VocabIndex:
    """Nearest vocabulary entries of a phrase by cosine similarity of MiniLM sentence vectors."""

    def __init__(self, entries: list[Entry], vectors: np.ndarray, encoder: SentenceEncoder):
        import torch

        if len(entries) != len(vectors):
            raise ValueError(f"{len(entries)} entries but {len(vectors)} vectors")
        self.entries = entries
        self.encoder = encoder
        self._values = sorted({e.value for e in entries})
        value_index = {v: k for k, v in enumerate(self._values)}
        owner = np.array([value_index[e.value] for e in entries])  # (N,) value of each entry
        # Entries sorted by value, so a value's best entry is one `maximum.reduceat` away.
        order = np.argsort(owner, kind="stable")
        self._starts = np.flatnonzero(np.r_[True, owner[order][1:] != owner[order][:-1]])  # (V,)
        self._vectors = torch.from_numpy(
            np.ascontiguousarray(vectors[order], np.float32)
        )  # (N, 384) unit rows
        self._penalty = np.array([ALIAS_PENALTY if entries[i].alias else 0.0 for i in order], np.float32)
        self._kind = {e.value: e.kind for e in entries}
        self._kinds = np.array([self._kind[v] for v in self._values])
        self._allowed: dict[tuple[str, ...], np.ndarray] = {}

    @classmethod
    def build(cls, vocab: Vocabulary, encoder: SentenceEncoder, cache_dir: str | os.PathLike | None = None):
        """Embed the vocabulary, or read the embeddings cached by an earlier build."""
        entries = vocabulary_entries(vocab)
        key = hashlib.sha256(
            "\n".join([RECIPE, encoder.identity, *(e.text for e in entries)]).encode()
        ).hexdigest()
        cache_dir = Path(cache_dir or os.environ.get("SEEDLING_CACHE", "cache"))
        path = cache_dir / f"pe_vocab_{key[:16]}.npy"
        if path.exists():
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape[0] == len(entries):
                return cls(entries, vectors, encoder)
        vectors = encoder.encode_uncached([e.text for e in entries]).astype(np.float32)
        cache_dir.mkdir(parents=True, exist_ok=True)
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a name
                np.save(f, vectors)

        write_atomic(path, save)  # a concurrent reader sees the old file or the whole new one
        return cls(entries, vectors, encoder)

    def kind_of(self, value: str) -> str:
        return self._kind[value]

    def scores(self, query_vectors: np.ndarray, weights: list[float]) -> np.ndarray:
        """(V,) best weighted cosine of each vocabulary value over the query forms."""
        import torch

        w = torch.tensor(weights, dtype=torch.float32)[:, None]
        with torch_threads(self.encoder.query_threads), torch.inference_mode():
            sims = (torch.from_numpy(np.asarray(query_vectors, np.float32)) @ self._vectors.T) * w  # (Q, N)
            per_entry = sims.max(0).values.numpy() - self._penalty  # (N,)
        return np.maximum.reduceat(per_entry, self._starts)

    def allowed(self, kinds: tuple[str, ...]) -> np.ndarray:
        if kinds not in self._allowed:
            self._allowed[kinds] = np.isin(self._kinds, kinds)
        return self._allowed[kinds]

    def ground_many(
        self,
        subjects: list[tuple[str, list[str]]],
        threshold: float = GROUND_THRESHOLD,
        k: int = 4,
        kinds: tuple[str, ...] = ("icon", "shape"),
    ) -> list[Grounding]:
        """Ground each (phrase, query forms) subject; all forms of all subjects in one encoder call."""
        forms = [f for _, fs in subjects for f in fs]
        vecs = self.encoder.encode(forms)
        out, start = [], 0
        for phrase, fs in subjects:
            q = vecs[start : start + len(fs)]
            start += len(fs)
            best = self.scores(q[:1], [1.0])
            if best.max() < CONFIDENT and len(fs) > 1:  # the whole phrase is diluted: try its core
                best = self.scores(q, [FORM_WEIGHTS[min(i, len(FORM_WEIGHTS) - 1)] for i in range(len(fs))])
            best = np.where(self.allowed(kinds), best, -np.inf)
            order = np.argsort(-best, kind="stable")[:k]
            top = [(self._values[i], float(best[i])) for i in order]
            value, score = top[0]
            ok = score >= threshold
            kind = self._kind[value] if ok else None
            out.append(Grounding(phrase, value if ok else None, kind, score, top[1:], closest=value))
        return out
