"""The article's composite estimator, from real signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tierline.router.live.composite import CharTrigramModel, CompositeEstimator, band_of
from tierline.router.policy import load_policy

HARD = ("Design a fault-tolerant distributed ledger for 12 data centres and analyse its "
        "consistency guarantees under network partitions. Compare a Raft-based design against a "
        "CRDT-based design, derive the write latency of each from the round-trip times, "
        "discuss clock skew, reconfiguration, snapshotting and compaction, and state precisely "
        "which anomalies each design admits under partition and during leader failover.")
POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "demo.yaml")


@pytest.mark.parametrize(("score", "band"), [(0.0, "low"), (0.4, "low"), (0.41, "mid"),
                                             (0.7, "mid"), (0.71, "high"), (1.0, "high")])
def test_bands_follow_the_thresholds(score: float, band: str) -> None:
    assert band_of(np.array([score]), {"high": 0.7, "mid": 0.4}) == [band]


def test_the_trigram_model_finds_familiar_text_less_perplexing_than_noise() -> None:
    model = CharTrigramModel(["the cat sat on the mat", "the dog sat on the log"] * 5)
    familiar, noise = model.log_perplexity(["the cat sat on the log", "qzx vkj wpf"])
    assert familiar < noise
    batch = model.log_perplexity(["the cat", "qzx", "the cat"])
    assert batch[0] == pytest.approx(batch[2])  # texts in one batch do not leak into each other


def test_the_composite_weighs_its_signals_as_the_policy_says() -> None:
    estimator = CompositeEstimator(POLICY.classifier)
    s = estimator.score(["what is the capital of Spain?"], [{}])
    w = POLICY.classifier.weights
    expected = (w["perplexity"] * s.perplexity + w["semantic"] * s.semantic
                + w["metadata"] * s.metadata)
    assert s.composite == pytest.approx(expected)
    assert all(0 <= v[0] <= 1 for v in (s.perplexity, s.semantic, s.metadata, s.composite))


def test_prompts_near_hard_prototypes_and_long_inputs_score_higher() -> None:
    estimator = CompositeEstimator(POLICY.classifier)
    easy = "what is the capital of Peru?"
    hard = HARD
    s = estimator.score([easy, hard], [{}, {}])
    assert s.semantic[1] > s.semantic[0]
    assert s.metadata[1] > s.metadata[0]
    assert band_of(s.composite, POLICY.classifier.thresholds) == ["low", "high"]


def test_metadata_uses_the_larger_of_word_count_and_file_size() -> None:
    estimator = CompositeEstimator(POLICY.classifier)
    spec = POLICY.classifier
    s = estimator.score(["short", "short"],
                        [{"word_count": spec.max_words // 2},
                         {"file_size": spec.max_file_bytes * 2}])
    assert s.metadata.tolist() == pytest.approx([0.5, 1.0])


def test_sparse_cosines_equal_the_dense_product() -> None:
    from tierline.router.live.composite import _cosines, _word_vectors

    estimator = CompositeEstimator(POLICY.classifier)
    texts = ["what is the capital of Spain?", HARD, "", "the the the", "zxq"]
    dense = _word_vectors(texts) @ estimator.centroids.T
    assert _cosines(texts, estimator.centroids) == pytest.approx(dense, abs=1e-6)
