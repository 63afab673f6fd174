"""Hashed word and character n-gram features of texts, vectorised for a whole batch.

The whole batch is lower-cased, encoded and joined into one byte array; words (runs of
bytes above space) get a position-independent polynomial hash from prefix sums, word
bigrams and the first/last character n-gram of every word are hashed from those, all in
numpy (deterministic across processes, unlike ``hash``). Each row holds ``1/sqrt(tokens)``
per token, duplicates kept; models fold the IDF into their weights. A few dense length
features ride along as extra columns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SALT_BIGRAM = np.uint64(0x632BE59BD9B4E019)
_SALT_CHAR = np.uint64(0xC2B2AE3D27D4EB4F)
_POLY = 0x100000001B3
_POLY_INV = pow(_POLY, -1, 1 << 64)
N_META = 4


@dataclass(frozen=True)
class HashingConfig:
    """How texts become hashed vectors; stored in every artifact that depends on it."""

    n_bits: int = 16
    word_bigrams: bool = True
    char_ngram: int = 4  # 0 disables character n-grams
    max_chars: int = 3000  # longer texts are cut; the head carries the question

    @property
    def n_hashed(self) -> int:
        """Width of the hashed part."""
        return 1 << self.n_bits

    @property
    def n_features(self) -> int:
        """Hashed width plus the dense meta columns."""
        return self.n_hashed + N_META

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


DEFAULT_HASHING = HashingConfig()


@dataclass(frozen=True)
class SparseRows:
    """A CSR-like batch: row ``i`` owns ``indices/values[indptr[i]:indptr[i+1]]``."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_features: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def row_ids(self) -> np.ndarray:
        """Row index of every stored entry."""
        return np.repeat(np.arange(self.n_rows), np.diff(self.indptr))

    def dot(self, weights: np.ndarray) -> np.ndarray:
        """``X @ weights`` for weights of shape (n_features,) or (n_features, k)."""
        contrib = weights[self.indices] * (
            self.values if weights.ndim == 1 else self.values[:, None]
        )
        out = np.zeros((self.n_rows,) + weights.shape[1:], dtype=np.float64)
        nonempty = np.diff(self.indptr) > 0
        if contrib.shape[0]:
            sums = np.add.reduceat(contrib, self.indptr[:-1][nonempty], axis=0)
            out[nonempty] = sums
        return out

    def tdot(self, grad_rows: np.ndarray) -> np.ndarray:
        """``X.T @ grad_rows`` for grad_rows of shape (n_rows,) or (n_rows, k)."""
        rows = self.row_ids()
        if grad_rows.ndim == 1:
            return np.bincount(
                self.indices, weights=self.values * grad_rows[rows], minlength=self.n_features
            )
        cols = [
            np.bincount(self.indices, weights=self.values * grad_rows[rows, j],
                        minlength=self.n_features)
            for j in range(grad_rows.shape[1])
        ]
        return np.stack(cols, axis=1)

    def take(self, rows: np.ndarray) -> SparseRows:
        """The sub-batch of the given row indices, in that order."""
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        offsets = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseRows(indptr, self.indices[offsets], self.values[offsets], self.n_features)

    def with_values(self, values: np.ndarray) -> SparseRows:
        return SparseRows(self.indptr, self.indices, values, self.n_features)


def _mix(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (splitmix64) so nearby codes land far apart."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(h ^ (h >> np.uint64(31)))


def _powers(base: int, count: int) -> np.ndarray:
    """``base**j mod 2**64`` for j in 0..count-1."""
    out = np.full(count, base, dtype=np.uint64)
    out[0] = 1
    return np.cumprod(out, dtype=np.uint64)


def _word_hashes(blob: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Position-independent polynomial hash of each byte span [start, end)."""
    powers = _powers(_POLY, len(blob) + 1)
    inverse = _powers(_POLY_INV, len(blob) + 1)
    prefix = np.zeros(len(blob) + 1, dtype=np.uint64)
    np.cumsum(blob.astype(np.uint64) * powers[:-1], dtype=np.uint64, out=prefix[1:])
    return _mix((prefix[ends] - prefix[starts]) * inverse[starts])


def _ngram_codes(blob: np.ndarray, at: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` bytes starting at each position of ``at``, packed into one integer."""
    code = np.zeros(len(at), dtype=np.uint64)
    for k in range(n):
        code = (code << np.uint64(8)) | blob[at + k].astype(np.uint64)
    return code


def _place(docs: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row pointers and the output slot of every entry, rows grouped by document."""
    counts = np.stack([np.bincount(d, minlength=n) for d in docs], axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts.sum(axis=1) + N_META)]).astype(np.int64)
    part_offset = indptr[:-1, None] + np.cumsum(counts, axis=1) - counts
    slots = []
    for p, d in enumerate(docs):
        first = np.cumsum(counts[:, p]) - counts[:, p]
        slots.append(part_offset[d, p] + np.arange(len(d)) - first[d])
    return indptr, np.concatenate(slots)


def hash_texts(texts: list[str], config: HashingConfig) -> SparseRows:
    """Hash a batch of texts into rows of ``1/sqrt(tokens)`` entries (apply IDF in weights)."""
    n, pad = len(texts), max(config.char_ngram, 1)
    encoded = [t[: config.max_chars].lower().encode("utf-8", "replace") for t in texts]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    blob = np.frombuffer(b"\0" * pad + (b"\0" * pad).join(encoded) + b"\0" * pad, np.uint8)
    doc_start = pad + np.cumsum(lengths + pad) - (lengths + pad)
    word = blob > 32
    edge = np.diff(word.astype(np.int8))
    w_start, w_end = np.flatnonzero(edge == 1) + 1, np.flatnonzero(edge == -1) + 1
    w_doc = np.searchsorted(doc_start, w_start, side="right") - 1
    uni = _word_hashes(blob, w_start, w_end)
    hashes, docs = [uni], [w_doc]
    if config.word_bigrams and len(uni) > 1:
        same = w_doc[1:] == w_doc[:-1]
        hashes.append(_mix(uni[:-1] * _GOLDEN + uni[1:] + _SALT_BIGRAM)[same])
        docs.append(w_doc[1:][same])
    if config.char_ngram:
        k = config.char_ngram
        hashes.append(_mix(_ngram_codes(blob, w_start, k) ^ _SALT_CHAR))
        hashes.append(_mix(_ngram_codes(blob, w_end - k, k) + _SALT_CHAR))
        docs += [w_doc, w_doc]
    indptr, slots = _place(docs, n)
    total = np.diff(indptr) - N_META
    indices = np.empty(indptr[-1], dtype=np.int64)
    values = np.empty(indptr[-1], dtype=np.float64)
    doc_all = np.concatenate(docs)
    indices[slots] = (np.concatenate(hashes) >> np.uint64(64 - config.n_bits)).astype(np.int64)
    values[slots] = (1.0 / np.sqrt(np.maximum(total, 1)))[doc_all]
    meta_slots = (indptr[1:] - N_META)[:, None] + np.arange(N_META)
    indices[meta_slots] = config.n_hashed + np.arange(N_META)
    values[meta_slots] = _meta(blob, doc_start, lengths, np.bincount(w_doc, minlength=n))
    return SparseRows(indptr, indices.astype(np.int32), values, config.n_features)


def _meta(blob: np.ndarray, starts: np.ndarray, lengths: np.ndarray, words: np.ndarray) -> (
    np.ndarray
):
    """Dense length features per text, scaled to about [0, 1]."""
    def per_text(mask: np.ndarray) -> np.ndarray:
        docs = np.searchsorted(starts, np.flatnonzero(mask), side="right") - 1
        return np.bincount(docs, minlength=len(starts)).astype(np.float64)

    digits = per_text((blob >= 48) & (blob <= 57))
    lines = per_text(blob == 10)
    return np.stack(
        [
            np.log1p(lengths) / 9,
            np.log1p(words) / 7,
            digits / np.maximum(lengths, 1),
            np.log1p(lines) / 4,
        ],
        axis=1,
    )


def fit_idf(rows: SparseRows) -> np.ndarray:
    """Smoothed inverse document frequency per feature (1 for the meta columns)."""
    # Rows come in order, so a stable (merge) sort of (row, feature) keys is nearly linear;
    # np.unique's hashing is an order of magnitude slower here.
    keys = np.sort(rows.row_ids().astype(np.int64) * rows.n_features + rows.indices,
                   kind="stable")
    first = np.ones(len(keys), dtype=bool)
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    df = np.bincount(keys[first] % rows.n_features, minlength=rows.n_features).astype(np.float64)
    idf = np.log((1 + rows.n_rows) / (1 + df)) + 1.0
    idf[-N_META:] = 1.0
    return idf


def append_dense(rows: SparseRows, dense: np.ndarray) -> SparseRows:
    """The same rows with ``dense`` (n, k) added as k extra columns at the end."""
    n, k = dense.shape
    lengths = np.diff(rows.indptr)
    indptr = np.concatenate([[0], np.cumsum(lengths + k)]).astype(np.int64)
    old_slots = np.arange(len(rows.indices)) + np.repeat(np.arange(n) * k, lengths)
    new_slots = ((indptr[1:] - k)[:, None] + np.arange(k)).ravel()
    indices = np.empty(indptr[-1], dtype=np.int32)
    values = np.empty(indptr[-1], dtype=np.float64)
    indices[old_slots], values[old_slots] = rows.indices, rows.values
    indices[new_slots] = np.tile(rows.n_features + np.arange(k), n)
    values[new_slots] = dense.ravel()
    return SparseRows(indptr, indices, values, rows.n_features + k)
