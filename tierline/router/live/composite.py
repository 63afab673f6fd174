"""The article's composite complexity estimator, from real signals computed in numpy.

    complexity = 0.3 · perplexity + 0.4 · semantic + 0.3 · metadata     (weights from the policy)
    band = high if complexity > 0.7, mid if > 0.4, else low             (thresholds from the policy)

- **perplexity**: a character-trigram language model (interpolated with bigrams and
  unigrams, counts hashed into fixed tables) is fitted on the policy's prototype texts;
  a prompt's mean negative log-probability per character, squashed by a logistic around
  ``perplexity_midpoint``, says how unlike known, easy text it is.
- **semantic**: hashed bag-of-words (words and word bigrams), L2-normalised; the cosine to
  each prototype cluster's centroid weights that cluster's complexity (softmax over
  similarities), so a prompt near the "proofs and legal analysis" cluster scores high.
- **metadata**: how large the input is: the larger of word count / ``max_words`` and
  ``metadata.file_size`` / ``max_file_bytes``, capped at 1. The article takes the minimum
  of those ratios, which is 0 whenever a request carries no file size; the maximum keeps
  the intent (size drives complexity) without that trap.

Every function takes a whole batch and works on arrays: one call classifies a bundle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from tierline.router.policy import ClassifierSpec

_TRIGRAM_BUCKETS = 1 << 20
_WORD_BUCKETS = 1 << 14
_LAMBDAS = (0.6, 0.3, 0.1)  # trigram, bigram, unigram interpolation weights
_SOFTMAX_TEMPERATURE = 0.1
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Scores:
    """Per-prompt signal values in [0, 1] and their weighted composite."""

    perplexity: np.ndarray
    semantic: np.ndarray
    metadata: np.ndarray
    composite: np.ndarray

    def reasons(self, i: int) -> dict[str, Any]:
        """Prompt ``i``'s signals, for its decision's reasons."""
        return {"perplexity": round(float(self.perplexity[i]), 4),
                "semantic": round(float(self.semantic[i]), 4),
                "metadata": round(float(self.metadata[i]), 4)}

    def p_correct(self, i: int) -> None:
        """No per-model quality estimate: the composite scores prompts, not models."""
        return None


def _char_codes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All texts as one uint8 array of lower-cased UTF-8 bytes, plus each text's start offset."""
    encoded = [b"  " + t.lower().encode("utf-8", "replace") for t in texts]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int64), starts


def _ngram_ids(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unigram, bigram and hashed trigram ids for every position that has two predecessors."""
    a, b, c = codes[:-2], codes[1:-1], codes[2:]
    return c, b * 256 + c, (a * 65536 + b * 256 + c) % _TRIGRAM_BUCKETS


class CharTrigramModel:
    """An interpolated character-trigram model over hashed count tables."""

    def __init__(self, corpus: Sequence[str]) -> None:
        codes, _ = _char_codes([" ".join(corpus)])
        uni, bi, tri = _ngram_ids(codes)
        self.uni = np.bincount(uni, minlength=256).astype(np.float64) + 1.0  # add-one floor
        self.bi = np.bincount(bi, minlength=65536).astype(np.float64)
        self.tri = np.bincount(tri, minlength=_TRIGRAM_BUCKETS).astype(np.float64)
        # Context counts: how often each history (one byte / two bytes) was followed by anything.
        self.ctx1 = np.bincount(bi // 256, minlength=256).astype(np.float64)
        self.ctx2 = np.bincount(
            codes[:-2] * 256 + codes[1:-1], minlength=65536
        ).astype(np.float64)[: 65536]
        self.uni_total = float(self.uni.sum())

    def log_perplexity(self, texts: Sequence[str]) -> np.ndarray:
        """Mean negative log-probability (nats per character) of each text."""
        if not texts:
            return np.zeros(0)
        codes, starts = _char_codes(texts)
        uni, bi, tri = _ngram_ids(codes)
        hist2 = codes[:-2] * 256 + codes[1:-1]
        p1 = self.uni[uni] / self.uni_total
        p2 = np.divide(self.bi[bi], self.ctx1[bi // 256],
                       out=np.zeros(len(bi)), where=self.ctx1[bi // 256] > 0)
        p3 = np.divide(self.tri[tri], self.ctx2[hist2],
                       out=np.zeros(len(tri)), where=self.ctx2[hist2] > 0)
        nll = -np.log(_LAMBDAS[0] * p3 + _LAMBDAS[1] * p2 + _LAMBDAS[2] * p1)
        # Position i scores byte i+2; texts start with two padding spaces, so each text's
        # scored positions are [start, start + len - 2). Cross-text positions are skipped.
        lengths = np.diff(np.append(starts, len(codes))) - 2
        csum = np.concatenate(([0.0], np.cumsum(nll)))
        sums = csum[starts + lengths] - csum[starts]
        per_byte: np.ndarray = sums / np.maximum(lengths, 1)
        return per_byte


def _word_grams(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(row, hashed bucket) of every word and word bigram of every text."""
    rows: list[int] = []
    cols: list[int] = []
    for row, text in enumerate(texts):
        words = _WORD.findall(text.lower())
        grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
        rows.extend([row] * len(grams))
        cols.extend(map(_bucket, grams))
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def _word_vectors(texts: Sequence[str]) -> np.ndarray:
    """Hashed, L2-normalised bag of words and word bigrams, one dense row per text."""
    out = np.zeros((len(texts), _WORD_BUCKETS), dtype=np.float32)
    rows, cols = _word_grams(texts)
    np.add.at(out, (rows, cols), 1.0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    normed: np.ndarray = out / np.maximum(norms, 1e-9)
    return normed


def _cosines(texts: Sequence[str], centroids: np.ndarray) -> np.ndarray:
    """Cosine of each text's word vector to each (unit) centroid, without the dense vectors.

    Same numbers as ``_word_vectors(texts) @ centroids.T``, from the sparse counts: a batch of
    a thousand prompts would otherwise allocate and normalise 64 MB of mostly zeros.
    """
    rows, cols = _word_grams(texts)
    if not len(rows):
        return np.zeros((len(texts), len(centroids)))
    pairs, counts = np.unique(rows * _WORD_BUCKETS + cols, return_counts=True)
    prow, pcol = pairs // _WORD_BUCKETS, pairs % _WORD_BUCKETS
    norms = np.sqrt(np.bincount(prow, weights=counts.astype(np.float64) ** 2,
                                minlength=len(texts)))
    dots = np.stack([np.bincount(prow, weights=counts * c[pcol], minlength=len(texts))
                     for c in centroids], axis=1)
    return dots / np.maximum(norms, 1e-9)[:, None]


@lru_cache(maxsize=1 << 16)
def _bucket(token: str) -> int:
    """The token's bucket; cached because words repeat across prompts far more than not."""
    return _stable_hash(token) % _WORD_BUCKETS


def _stable_hash(token: str) -> int:
    """A hash that is the same in every process (Python's ``hash`` of str is salted)."""
    h = 2166136261
    for byte in token.encode("utf-8"):
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


class CompositeEstimator:
    """Scores prompts with the policy's composite; fitted once from the policy's prototypes."""

    name = "composite"

    def __init__(self, spec: ClassifierSpec) -> None:
        self.spec = spec
        corpus = [text for proto in spec.prototypes for text in proto.examples]
        self.trigrams = CharTrigramModel(corpus or ["the quick brown fox jumps over the lazy dog"])
        if spec.prototypes:
            centroids = np.stack([_word_vectors(p.examples).mean(axis=0) for p in spec.prototypes])
            norms = np.linalg.norm(centroids, axis=1, keepdims=True)
            self.centroids = centroids / np.maximum(norms, 1e-9)
            self.complexities = np.array([p.complexity for p in spec.prototypes])
        else:
            self.centroids = np.zeros((0, _WORD_BUCKETS), dtype=np.float32)
            self.complexities = np.zeros(0)

    def score(self, texts: Sequence[str], metas: Sequence[Mapping[str, Any]]) -> Scores:
        """Signal values and composite for a batch of prompts."""
        spec = self.spec
        lp = self.trigrams.log_perplexity(texts)
        perplexity = 1.0 / (1.0 + np.exp(-(lp - spec.perplexity_midpoint) / spec.perplexity_scale))
        if len(self.complexities):
            sims = _cosines(texts, self.centroids)
            weights = np.exp((sims - sims.max(axis=1, keepdims=True)) / _SOFTMAX_TEMPERATURE)
            semantic = (weights @ self.complexities) / weights.sum(axis=1)
        else:
            semantic = np.full(len(texts), 0.5)
        metadata = np.array([self._metadata_score(t, m) for t, m in zip(texts, metas, strict=True)])
        w = spec.weights
        composite = (w.get("perplexity", 0.0) * perplexity + w.get("semantic", 0.0) * semantic
                     + w.get("metadata", 0.0) * metadata)
        return Scores(perplexity, semantic, metadata, np.clip(composite, 0.0, 1.0))

    def _metadata_score(self, text: str, meta: Mapping[str, Any]) -> float:
        words = meta.get("word_count")
        if not isinstance(words, (int, float)):
            words = len(text.split())
        ratios = [float(words) / self.spec.max_words]
        size = meta.get("file_size")
        if isinstance(size, (int, float)):
            ratios.append(float(size) / self.spec.max_file_bytes)
        return min(max(ratios), 1.0)


def band_of(scores: np.ndarray, thresholds: Mapping[str, float]) -> list[str]:
    """Complexity band per score: 'high' above the high bar, 'mid' above the mid bar, else 'low'."""
    return [
        "high" if s > thresholds["high"] else "mid" if s > thresholds["mid"] else "low"
        for s in scores.tolist()
    ]
