"""Personal data and secrets (FT5xx) in any text of a record.

Numbers are only reported when their checksum holds (Chinese resident IDs: ISO 7064 MOD 11-2; cards: Luhn),
which keeps order numbers and timestamps from flooding the report. Matches are masked in messages: the report
itself must not spread what it found.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

from ftcli.data.diagnostics import Finding, Fix

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_API_KEY = re.compile(
    r"(?<![A-Za-z0-9_])(?:sk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic style
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|AIza[0-9A-Za-z_-]{35})(?![A-Za-z0-9_-])"  # Google API keys
)
# Digit runs not touching other digits: resident IDs (17 digits + check), cards (13-19), CN mobiles (11).
_DIGITS = re.compile(r"(?<![\d.])(?:\+?86[- ]?)?(\d{17}[\dXx]|\d{11,19})(?![\d])")
_GROUPED_CARD = re.compile(r"(?<!\d)\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}(?!\d)")
_PHONE = re.compile(r"(?<![A-Za-z0-9+])(?:\+\d{1,3}[ .-]?)?\(?\d{2,4}\)?[ .-]\d{3,4}[ .-]\d{3,4}(?![A-Za-z0-9-])")
_GITHUB_TOKEN = re.compile(r"gh[pousr]_")
_DIGIT_RUN = re.compile(r"\d[\d ().-]{6,}\d")  # every number pattern below has 8+ digits and separators
_CN_MOBILE = re.compile(r"1[3-9]\d{9}")
_RESERVED_DOMAINS = frozenset({"example.com", "example.org", "example.net", "localhost"})
_RESERVED_SUFFIXES = (".example", ".test", ".invalid", ".localhost", ".example.com", ".example.org", ".example.net")
_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[4-8]|6")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_HINT = Fix("remove or mask it before training (or pass --pii off if the data is synthetic)")


def might_contain_pii(text: str) -> bool:
    """A cheap test that rules out most text before any specific pattern runs (substring scans run at C speed).

    Run on a whole JSONL line: the trigger characters are ASCII, which JSON writers don't escape.
    """
    return (
        "@" in text
        or "sk-" in text
        or "-----BEGIN" in text
        or "AKIA" in text
        or "AIza" in text
        or "xox" in text
        or ("_" in text and _GITHUB_TOKEN.search(text) is not None)
        or _DIGIT_RUN.search(text) is not None
    )


def scan_text(text: str, path: str) -> Iterator[Finding]:
    """Findings for one string."""
    if "@" in text:
        for match in _EMAIL.finditer(text):
            if _reserved_domain(match.group()):
                continue
            yield Finding("FT501", f"e-mail address {mask(match.group())}", path=path, fix=_HINT)
    if "-----BEGIN" in text:
        for _match in _PRIVATE_KEY.finditer(text):
            yield Finding("FT507", "private key block", path=path, fix=_HINT)
    for match in _API_KEY.finditer(text):
        yield Finding("FT506", f"API key {mask(match.group())}", path=path, fix=_HINT)
    if _DIGIT_RUN.search(text):
        yield from _scan_numbers(text, path)


def _reserved_domain(address: str) -> bool:
    """RFC 2606 names (example.com, *.test, …) are documentation, not anybody's address."""
    domain = address.rsplit("@", 1)[1].lower()
    return domain in _RESERVED_DOMAINS or domain.endswith(_RESERVED_SUFFIXES)


def _scan_numbers(text: str, path: str) -> Iterator[Finding]:
    taken: list[tuple[int, int]] = []
    for match in _DIGITS.finditer(text):
        digits = match.group(1)
        finding = _classify_digits(digits, path)
        if finding:
            taken.append(match.span())
            yield finding
    for match in _GROUPED_CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if card_number_plausible(digits) and not _overlaps(match.span(), taken):
            taken.append(match.span())
            yield Finding("FT505", f"card number {mask(digits)}", path=path, fix=_HINT)
    for match in _PHONE.finditer(text):
        if not _overlaps(match.span(), taken) and sum(c.isdigit() for c in match.group()) >= 9:
            yield Finding("FT502", f"phone number {mask(match.group())}", path=path, fix=_HINT)


def _classify_digits(digits: str, path: str) -> Finding | None:
    if len(digits) == 18 and resident_id_valid(digits):
        return Finding("FT504", f"Chinese resident ID number {mask(digits)}", path=path, fix=_HINT)
    if len(digits) == 11 and _CN_MOBILE.fullmatch(digits):
        return Finding("FT503", f"Chinese mobile number {mask(digits)}", path=path, fix=_HINT)
    if digits.isdigit() and card_number_plausible(digits):
        return Finding("FT505", f"card number {mask(digits)}", path=path, fix=_HINT)
    return None


def resident_id_valid(number: str) -> bool:
    """GB 11643-1999: 17 digits (region, birth date, sequence) + an ISO 7064 MOD 11-2 check character."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        born = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= 2100:
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0 and len(set(digits)) > 1


def card_number_plausible(digits: str) -> bool:
    """Issuer prefixes of the card networks (Visa, Mastercard, Amex, JCB, Diners, Discover, UnionPay) + Luhn."""
    return 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) is not None and luhn_valid(digits)


def mask(value: str) -> str:
    """Keep enough to find the spot, never enough to reuse it: 'sk-abc…yz'."""
    if len(value) <= 6:
        return "*" * len(value)
    return f"{value[:3]}…{value[-2:]}"


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)
