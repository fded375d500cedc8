"""convert end to end: read → detect preset → convert each record → dedup / shuffle / split → write atomically."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ftcli.data.convert.presets import (
    PRESET_KEYS,
    PRESETS,
    ConversionError,
    MissingImage,
    PresetOptions,
    detect,
    parse_map,
    preference_record,
)
from ftcli.data.convert.sources import SourceRecord, read_records
from ftcli.data.convert.writer import ensure_writable, write_atomic
from ftcli.data.errors import DataError
from ftcli.data.formats.raw import detect_format, kto_label
from ftcli.data.rules.conversion import empty_prompts_kept, kto_labels, placeholders_written
from ftcli.data.rules.placeholders import placeholder_names
from ftcli.data.tokens import iter_texts

KtoTarget = Literal["dpo", "sft"]
ImagesMode = Literal["refuse", "skip"]


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    preset: str | None = None  # None: detect from the first record
    input_format: str | None = None
    preset_options: PresetOptions = field(default_factory=PresetOptions)
    kto_to: KtoTarget | None = None  # binary-feedback (KTO) data: pair into DPO records, or keep the desirable (SFT)
    images: ImagesMode = "refuse"  # a record whose image file is missing: refused, or dropped and counted
    dedup: bool = False
    shuffle: bool = False
    split: float | None = None  # fraction for validation
    seed: int = 0
    force: bool = False


@dataclass(frozen=True, slots=True)
class Skipped:
    location: str
    reason: str


@dataclass(frozen=True, slots=True)
class Note:
    """Something convert did or saw that a person should know, with its rule code (`ftcli rules`)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ConvertResult:
    preset: str
    detected: bool
    records: int
    written: int
    validation_written: int
    duplicates_dropped: int
    skipped: list[Skipped]
    outputs: list[str]
    dropped: dict[str, int] = field(default_factory=dict)  # records left out as an option asked, by why
    ignored_keys: dict[str, int] = field(default_factory=dict)  # source keys the preset doesn't read -> records
    notes: list[Note] = field(default_factory=list)


@dataclass(slots=True)
class _Converted:
    location: str
    record: dict[str, Any]
    label: bool | None = None  # a KTO record's label


def convert_text(text: str, *, name: str, options: ConvertOptions) -> tuple[list[str], ConvertResult]:
    """Convert the input text; returns the output lines (JSON + newline) and what happened."""
    sources = list(read_records(text, name=name, input_format=options.input_format))
    preset = options.preset or _detect(sources, options.preset_options)
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}", hint=f"choose one of {', '.join(PRESETS)}")
    _check_kto(sources, options.kto_to)
    convert = PRESETS[preset]
    read_keys = _read_keys(preset, options.preset_options)
    converted: list[_Converted] = []
    skipped: list[Skipped] = []
    dropped: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    for source in sources:
        if source.problem:
            skipped.append(Skipped(source.location, source.problem))
            continue
        value, label = source.value, None
        if options.kto_to is not None and isinstance(value, dict):
            found = kto_label(value)
            if found is None:
                skipped.append(Skipped(source.location, "no true/false label: --kto-to needs one on every record"))
                continue
            value, label = {key: item for key, item in value.items() if key != found[0]}, found[1]
        if read_keys is not None and isinstance(value, dict):
            ignored.update(
                key for key, item in value.items() if key not in read_keys and item not in (None, "", [], {})
            )
        try:
            converted.append(_Converted(source.location, convert(value, options.preset_options), label))
        except MissingImage as exc:
            if options.images == "skip":
                dropped["records with a missing image (--images skip)"] += 1
            else:
                hint = "--image-dir names the folder image paths start from; --images skip drops such records"
                skipped.append(Skipped(source.location, f"{exc} ({hint})"))
        except ConversionError as exc:
            skipped.append(Skipped(source.location, str(exc)))
    if options.kto_to == "sft":
        dropped["answers labelled false (--kto-to sft)"] = sum(1 for c in converted if c.label is False)
        converted = [c for c in converted if c.label]
    elif options.kto_to == "dpo":
        converted = _pair(converted, skipped, dropped)
    lines: list[str] = []
    seen: set[bytes] = set()
    duplicates = 0
    for item in converted:
        line = json.dumps(item.record, ensure_ascii=False) + "\n"
        if options.dedup:
            digest = hashlib.blake2b(line.encode("utf-8"), digest_size=16).digest()
            if digest in seen:
                duplicates += 1
                continue
            seen.add(digest)
        lines.append(line)
    result = ConvertResult(
        preset=preset,
        detected=options.preset is None,
        records=len(sources),
        written=len(lines),
        validation_written=0,
        duplicates_dropped=duplicates,
        skipped=sorted(skipped, key=lambda s: _order(s.location)),
        outputs=[],
        dropped={why: count for why, count in dropped.items() if count},
        ignored_keys=dict(ignored),
        notes=_notes(converted),
    )
    return lines, result


def _check_kto(sources: list[SourceRecord], kto_to: KtoTarget | None) -> None:
    """Binary-feedback data is refused unless --kto-to says what to make of it; --kto-to on other data is a mistake."""
    labelled = [(s.location, found[0]) for s in sources if isinstance(s.value, dict) and (found := kto_label(s.value))]
    if labelled and kto_to is None:
        finding = kto_labels(labelled[0][0], len(labelled), len(sources), labelled[0][1])
        raise DataError(f"{finding.message} ({finding.code})", hint=finding.fix.hint if finding.fix else None)
    if kto_to is not None and not labelled:
        raise DataError("--kto-to: no record carries a true/false label (KTO data has `label` or `kto_tag`)")


def _pair(converted: list[_Converted], skipped: list[Skipped], dropped: Counter[str]) -> list[_Converted]:
    """--kto-to dpo: per prompt (the messages before the labelled answer, and the tools), its n-th desirable answer
    with its n-th undesirable one, in file order; answers left without a partner are counted."""
    groups: dict[str, tuple[list[_Converted], list[_Converted]]] = {}
    for item in converted:
        messages = item.record.get("messages") or []
        if not messages or messages[-1].get("role") != "assistant":
            skipped.append(Skipped(item.location, "the last message must be the labelled assistant answer"))
            continue
        key = json.dumps([messages[:-1], item.record.get("tools")], sort_keys=True, ensure_ascii=False)
        groups.setdefault(key, ([], []))[0 if item.label else 1].append(item)
    pairs: list[_Converted] = []
    for good, bad in groups.values():
        for chosen, rejected in zip(good, bad, strict=False):
            prompt = chosen.record["messages"][:-1]
            answers = [{k: v for k, v in c.record["messages"][-1].items() if k != "weight"} for c in (chosen, rejected)]
            try:
                record = preference_record(prompt, chosen.record.get("tools"), answers[0], answers[1])
            except ConversionError as exc:
                skipped.append(Skipped(f"{chosen.location} and {rejected.location}", str(exc)))
                continue
            pairs.append(_Converted(chosen.location, record))
        unpaired = abs(len(good) - len(bad))
        dropped["answers without a partner of the other label (--kto-to dpo)"] += unpaired
    return sorted(pairs, key=lambda c: _order(c.location))


def _notes(converted: list[_Converted]) -> list[Note]:
    notes: list[Note] = []
    no_user = [c.location for c in converted if _chat_without_user(c.record)]
    if no_user:
        finding = empty_prompts_kept(len(no_user), no_user[0])
        notes.append(Note(finding.code, finding.message))
    with_placeholders: list[str] = []
    names: dict[str, None] = {}
    for item in converted:
        found = [name for _, text in iter_texts(item.record) for name in placeholder_names(text)]
        if found:
            with_placeholders.append(item.location)
            names.update(dict.fromkeys(found))
    if with_placeholders:
        finding = placeholders_written(len(with_placeholders), with_placeholders[0], list(names))
        notes.append(Note(finding.code, finding.message))
    return notes


def _chat_without_user(record: dict[str, Any]) -> bool:
    messages = record.get("messages")
    return isinstance(messages, list) and not any(m.get("role") == "user" for m in messages)


def _read_keys(preset: str, options: PresetOptions) -> frozenset[str] | None:
    keys = PRESET_KEYS.get(preset)
    if preset == "map":
        fields = [value for spec in options.field_map.values() for kind, value in parse_map(spec) if kind == "field"]
        return frozenset(path.split(".", 1)[0] for path in fields)
    return keys


def _order(location: str) -> tuple[int, str]:
    number = location.split(" ")[1] if " " in location else ""
    return (int(number) if number.isdigit() else 0, location)


def convert_file(
    text: str, *, name: str, output: Path, validation_output: Path | None, inputs: list[Path], options: ConvertOptions
) -> ConvertResult:
    targets = [output] + ([validation_output] if validation_output else [])
    for target in targets:
        ensure_writable(target, inputs=inputs, force=options.force)
    lines, result = convert_text(text, name=name, options=options)
    if not lines:
        raise DataError(f"no record of {name} could be converted", hint=_first_reason(result))
    train, validation = arrange(lines, shuffle=options.shuffle, split=options.split, seed=options.seed)
    write_atomic(output, train)
    if validation_output is not None:
        write_atomic(validation_output, validation)
    return dataclasses.replace(
        result, written=len(train), validation_written=len(validation), outputs=[str(t) for t in targets]
    )


def arrange(lines: list[str], *, shuffle: bool, split: float | None, seed: int) -> tuple[list[str], list[str]]:
    """Shuffle and split with a seeded RNG. Identical lines always land on the same side of a split."""
    if split is None:
        if shuffle:
            lines = lines.copy()
            random.Random(seed).shuffle(lines)
        return lines, []
    if not 0 < split < 1:
        raise DataError(f"--split must be between 0 and 1, got {split}")
    groups: dict[str, list[str]] = {}
    for line in lines:
        groups.setdefault(line, []).append(line)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    n_validation = max(1, round(len(lines) * split))
    validation: list[str] = []
    train: list[str] = []
    for key in keys:
        (validation if len(validation) < n_validation else train).extend(groups[key])
    if not train:
        raise DataError("the split leaves no training examples", hint="use a smaller --split")
    if not shuffle:  # keep the source order within each side
        order = {line: index for index, line in enumerate(lines)}
        train.sort(key=order.__getitem__)
        validation.sort(key=order.__getitem__)
    return train, validation


def _detect(sources: list[SourceRecord], options: PresetOptions) -> str:
    for source in sources[:100]:
        if source.problem is None:
            preset = detect(source.value, options)
            if preset:
                return preset
            found = detect_format(source.value)
            if found is not None and found.why_not:
                raise DataError(f"cannot convert {found.description} ({source.location}): {found.why_not}")
            raise DataError(
                f"cannot tell the format of {source.location}: keys {_keys(source.value)}",
                hint="name it with --preset, or map fields: --map user=FIELD --map assistant=FIELD "
                "(a template joins several: --map user='{title}\\n\\n{body}')",
            )
    raise DataError("no readable record to detect the format from")


def _keys(value: Any) -> str:
    return ", ".join(sorted(value)[:8]) if isinstance(value, dict) else type(value).__name__


def _first_reason(result: ConvertResult) -> str | None:
    return f"{result.skipped[0].location}: {result.skipped[0].reason}" if result.skipped else None
