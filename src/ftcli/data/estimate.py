"""Training epochs and cost, by OpenAI's published default-epoch rule and the catalog's prices."""

from __future__ import annotations

from dataclasses import dataclass

TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def default_epochs(n_examples: int) -> int:
    """3 epochs, moved so that examples × epochs stays within 100..25,000, clamped to 1..25."""
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


@dataclass(frozen=True, slots=True)
class Estimate:
    model: str
    epochs: int
    epochs_source: str  # "default rule" or "--epochs"
    tokens_per_epoch: int  # Σ min(limit, tokens per example)
    billed_tokens: int  # tokens_per_epoch × epochs
    price_per_1m_tokens: float | None
    cost_usd: float | None  # None when the price is unknown

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "epochs": self.epochs,
            "epochs_source": self.epochs_source,
            "tokens_per_epoch": self.tokens_per_epoch,
            "billed_tokens": self.billed_tokens,
            "price_per_1m_tokens": self.price_per_1m_tokens,
            "cost_usd": self.cost_usd,
        }


def estimate(
    *, model: str, tokens_per_epoch: int, n_examples: int, epochs: int | None, price: float | None
) -> Estimate:
    resolved = epochs if epochs is not None else default_epochs(n_examples)
    billed = tokens_per_epoch * resolved
    return Estimate(
        model=model,
        epochs=resolved,
        epochs_source="--epochs" if epochs is not None else "default rule",
        tokens_per_epoch=tokens_per_epoch,
        billed_tokens=billed,
        price_per_1m_tokens=price,
        cost_usd=None if price is None else round(billed / 1_000_000 * price, 4),
    )
