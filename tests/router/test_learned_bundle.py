"""The routing bundle: saved once after training, loaded by a tier worker to drive a cascade."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import recorded
from tierline.router.errors import PolicyError
from tierline.router.learned.answers import EXTRACTORS
from tierline.router.learned.bundle import bundle_of, load_bundle, save_bundle
from tierline.router.learned.judge import router_logit_map
from tierline.router.learned.training import train_routing
from tierline.router.strategies.basic import Cascade
from tierline.router.strategies.steps import Accept, Attempt, RequestView

PRICES = {"cheap": (1.0, 1.0), "top": (20.0, 20.0)}


def _items(n: int = 160) -> list:  # type: ignore[type-arg]
    return recorded.items(n, {"cheap": 0.5, "top": 0.9})


def test_bundle_round_trips_and_drives_a_live_cascade(tmp_path: Path) -> None:
    trained = train_routing(_items(), PRICES)
    save_bundle(bundle_of(trained), tmp_path / "routing")
    bundle = load_bundle(tmp_path / "routing", ["top", "cheap"])
    assert bundle.models == ("cheap", "top")
    prompt = "question 7"
    p = bundle.router.predict([prompt])[0]
    assert np.allclose(p, trained.router.predict([prompt])[0], atol=1e-5)
    view = RequestView(prompt, {m: float(p[j]) for j, m in enumerate(bundle.models)})
    logits = router_logit_map(bundle.models, view.p_correct)
    cascade = Cascade(bundle.models, bundle.judge, bar=0.99)
    fake_provider = {"cheap": "hmm, the answer is (B)", "top": "clearly the answer is (C)"}
    attempts: list[Attempt] = []
    action = cascade.step(view, attempts)
    while not isinstance(action, Accept):
        for model in action.models:  # a tier worker calls these concurrently
            attempts.append(bundle.scorer.attempt(model, prompt, fake_provider[model],
                                                  logits[model], EXTRACTORS[bundle.extractor]))
        action = cascade.step(view, attempts)
    assert [a.model for a in attempts] == ["cheap", "top"]
    assert action.answer in {"B", "C"} and 0 <= action.confidence <= 1


def test_bundle_for_other_models_is_refused(tmp_path: Path) -> None:
    save_bundle(bundle_of(train_routing(_items(80), PRICES)), tmp_path / "b")
    with pytest.raises(PolicyError, match="other-model"):
        load_bundle(tmp_path / "b", ["cheap", "other-model"])
