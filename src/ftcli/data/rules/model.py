"""Model rules (FT302–FT304, FT320–FT321): the model the file is checked for — known to ftcli, able to train this
method, still serving, able to train the reasoning where it stands."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from ftcli.data import clock
from ftcli.data.catalog import ModelInfo
from ftcli.data.diagnostics import Finding, Fix


def model_findings(info: ModelInfo, method: str, *, named: bool, today: dt.date) -> Iterator[Finding]:
    """`named`: the user named the model (no shutdown warning for the default one they didn't choose)."""
    if not info.known:
        yield Finding(
            "FT302",
            f"model {info.name!r} is not in ftcli's catalog: counted with {info.encoding}; "
            "context limit and price unknown",
        )
    elif method not in info.methods and named:  # the default model isn't the user's choice (it has no RFT)
        yield Finding("FT303", f"{info.name} supports {', '.join(info.methods)}, not {method}")
    if info.shutdown_date is not None and named:
        days = clock.days_until(info.shutdown_date, today_is=today)
        when = (
            f"shut down on {info.shutdown_date}"
            if days <= 0
            else f"stops serving on {info.shutdown_date} ({days} days)"
        )
        yield Finding(
            "FT304", f"{info.name} {when}", fix=Fix("train on another backend: `ftcli train --backend local`")
        )


def reasoning_not_trained(model: str, examples: int, why: str) -> Finding:
    """FT320: the file carries reasoning traces the model named can't train on; `why` says what happens to them."""
    return Finding(
        "FT320",
        f"{examples:,} example{'s' * (examples != 1)} carry reasoning, which {model} can't train on: {why}",
        fix=Fix(
            "train a base that renders reasoning (a Qwen3-style thinking model, locally or on Together), "
            "or leave the reasoning out"
        ),
    )


def reasoning_left_out(path: str, why: str) -> Finding:
    """FT321: the reasoning of the answer at `path` would not be trained; `why` names what leaves it out."""
    return Finding(
        "FT321",
        f"{path} carries reasoning, which {why}",
        path=path,
        fix=Fix(
            "split the conversation so each example ends with the answer whose reasoning it trains, or leave that "
            "reasoning out"
        ),
    )
