from __future__ import annotations

import datetime as dt

from ftcli.data.catalog import load_catalog


def test_known_figures() -> None:
    catalog = load_catalog()
    assert catalog.lookup("gpt-4o-2024-08-06").training_context == 65536
    assert catalog.lookup("gpt-4o-mini-2024-07-18").training_context == 65536
    assert catalog.lookup("gpt-3.5-turbo-0125").training_context == 16385
    prices = {
        m: catalog.lookup(m).price_per_1m_training_tokens for m in ("gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini")
    }
    assert prices == {"gpt-4.1": 25.0, "gpt-4.1-mini": 5.0, "gpt-4o": 25.0, "gpt-4o-mini": 3.0}
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"):
        assert catalog.lookup(model).shutdown_date == dt.date(2027, 1, 14)
    assert catalog.lookup("gpt-3.5-turbo").shutdown_date == dt.date(2026, 10, 23)
    assert catalog.last_job_creation == dt.date(2027, 1, 6)


def test_unknown_figures_stay_unknown() -> None:
    catalog = load_catalog()
    assert catalog.lookup("gpt-4.1").training_context is None
    assert catalog.lookup("gpt-3.5-turbo-0125").price_per_1m_training_tokens is None
    unknown = catalog.lookup("my-local-llama")
    assert not unknown.known
    assert unknown.price_per_1m_training_tokens is None and unknown.training_context is None


def test_every_entry_names_its_source() -> None:
    for info in load_catalog().models.values():
        assert info.source.strip()
        assert info.encoding in ("o200k_base", "cl100k_base")
