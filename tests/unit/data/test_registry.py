"""The rule registry is the one place rules are declared: codes are emitted only from data/rules/, every emitted code
is registered, docs/rules.md is generated from it, and named profiles leave out exactly their rules."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ftcli.data.check.engine import CheckOptions, check_file
from ftcli.data.errors import DataError
from ftcli.data.rules.registry import PROFILES, RULES, matches
from ftcli.render.rules import rules_markdown
from tests.conftest import REPO, qa

SOURCE = REPO / "src" / "ftcli"
CODE_LITERAL = re.compile(r"""["'](FT\d{3})["']""")


def test_rule_codes_are_emitted_only_from_the_rules_package_and_all_are_registered() -> None:
    outside = {
        f"{path.relative_to(SOURCE)}: {code}"
        for path in SOURCE.rglob("*.py")
        if "data/rules" not in path.as_posix()
        for code in CODE_LITERAL.findall(path.read_text(encoding="utf-8"))
    }
    assert outside == set()
    emitted = {
        code for path in (SOURCE / "data" / "rules").glob("*.py") for code in CODE_LITERAL.findall(path.read_text())
    }
    emitted -= {code for code in emitted if code in {p for profile in PROFILES.values() for p in profile.ignore}}
    assert emitted <= set(RULES), emitted - set(RULES)
    assert len(emitted) > 50  # the scan sees the rules (a broken pattern would pass the checks above vacuously)


def test_docs_rules_md_is_generated_from_the_registry() -> None:
    committed = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    assert committed == rules_markdown(), "run `ftcli rules --markdown > docs/rules.md`"
    assert all(f"| {code} |" in committed for code in RULES)


def test_the_local_training_profile_leaves_out_exactly_its_rules(write_jsonl: Callable[..., Path]) -> None:
    records = [qa(1), qa(2), {"messages": [{"role": "user", "content": "mail me at zhang.wei.1987@qq.com"},
                                           {"role": "assistant", "content": "ok"}]}, "{not json"]  # fmt: skip
    path = write_jsonl([json.dumps(r) if isinstance(r, dict) else r for r in records])
    plain = {d.code for d in check_file(path, options=CheckOptions(model="acme-unknown")).diagnostics}
    assert {"FT401", "FT501", "FT302", "FT002"} <= plain
    profiled = check_file(path, options=CheckOptions(model="acme-unknown", profile="local-training"))
    left = {d.code for d in profiled.diagnostics}
    assert left == {c for c in plain if not matches(c, PROFILES["local-training"].ignore)}
    assert "FT002" in left and not {"FT401", "FT501", "FT302"} & left
    assert profiled.first_errors() == ["line 4: FT002 invalid JSON: Expecting property name enclosed in double quotes"]
    with pytest.raises(DataError, match="unknown rule profile"):
        check_file(path, options=CheckOptions(profile="no-such-profile"))
