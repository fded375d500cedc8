from __future__ import annotations

import pytest

from ftcli.data.rules.pii import luhn_valid, mask, resident_id_valid, scan_text


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("contact zhang.san@pku.edu.cn today", ["FT501"]),
        ("no address here @ all", []),
        ("手机号13812345678请联系", ["FT503"]),
        ("电话 +86 139-1234-5678", ["FT502"]),
        ("call (415) 555-0132 now", ["FT502"]),
        ("身份证号11010519491231002X", ["FT504"]),
        ("身份证号110105194912310021", []),  # wrong check digit
        ("身份证号110105194913310020", []),  # month 13
        ("card 4111 1111 1111 1111", ["FT505"]),
        ("卡号6222021234567890128", ["FT505"]),
        ("order 4111111111111112", []),  # Luhn fails
        ("timestamp 20231105123456", []),  # not an issuer prefix
        ("key=sk-proj-AbCdEfGhIjKlMnOpQrStUvWx", ["FT506"]),
        ("aws AKIAIOSFODNN7EXAMPLE", ["FT506"]),
        ("密钥ghp_abcdefghijklmnopqrstuvwxyz0123456789", ["FT506"]),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl", ["FT507"]),
        ("the year 2024 had 366 days and 12 months", []),
    ],
)
def test_scan_text(text: str, codes: list[str]) -> None:
    assert [f.code for f in scan_text(text, "messages[1].content")] == codes


def test_messages_never_contain_the_secret() -> None:
    secret = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx"
    (finding,) = scan_text(f"use {secret}", "p")
    assert secret not in finding.message
    assert finding.path == "p"


def test_checksums() -> None:
    assert resident_id_valid("11010519491231002X")
    assert not resident_id_valid("11010519491231002Y")
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert mask("abcdefghij") == "abc…ij" and mask("abc") == "***"
