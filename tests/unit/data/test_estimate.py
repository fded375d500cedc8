from __future__ import annotations

import pytest

from ftcli.data.estimate import default_epochs, estimate


@pytest.mark.parametrize(
    ("examples", "epochs"),
    [(1, 25), (3, 25), (5, 20), (10, 10), (33, 3), (34, 3), (100, 3), (8333, 3), (8334, 2), (12501, 1), (100_000, 1)],
)
def test_default_epoch_rule(examples: int, epochs: int) -> None:
    assert default_epochs(examples) == epochs


def test_cost_uses_price_and_epochs() -> None:
    result = estimate(model="m", tokens_per_epoch=1_000_000, n_examples=50, epochs=None, price=3.0)
    assert (result.epochs, result.billed_tokens, result.cost_usd) == (3, 3_000_000, 9.0)
    explicit = estimate(model="m", tokens_per_epoch=10, n_examples=50, epochs=7, price=None)
    assert (explicit.epochs, explicit.epochs_source, explicit.cost_usd) == (7, "--epochs", None)
