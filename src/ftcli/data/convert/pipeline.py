"""convert end to end: read → detect preset → convert each record → dedup / shuffle / split → write atomically."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcli.data.convert.presets import PRESETS, ConversionError, PresetOptions, detect
from ftcli.data.convert.sources import SourceRecord, read_records
from ftcli.data.convert.writer import ensure_writable, write_atomic
from ftcli.data.errors import DataError


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    preset: str | None = None  # None: detect from the first record
    input_format: str | None = None
    preset_options: PresetOptions = field(default_factory=PresetOptions)
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
class ConvertResult:
    preset: str
    detected: bool
    records: int
    written: int
    validation_written: int
    duplicates_dropped: int
    skipped: list[Skipped]
    outputs: list[str]


def convert_text(text: str, *, name: str, options: ConvertOptions) -> tuple[list[str], ConvertResult]:
    """Convert the input text; returns the output lines (JSON + newline) and what happened."""
    sources = list(read_records(text, name=name, input_format=options.input_format))
    preset = options.preset or _detect(sources, options.preset_options)
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}", hint=f"choose one of {', '.join(PRESETS)}")
    convert = PRESETS[preset]
    lines: list[str] = []
    skipped: list[Skipped] = []
    seen: set[bytes] = set()
    duplicates = 0
    for source in sources:
        if source.problem:
            skipped.append(Skipped(source.location, source.problem))
            continue
        try:
            record = convert(source.value, options.preset_options)
        except ConversionError as exc:
            skipped.append(Skipped(source.location, str(exc)))
            continue
        line = json.dumps(record, ensure_ascii=False) + "\n"
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
        skipped=skipped,
        outputs=[],
    )
    return lines, result


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
    return ConvertResult(
        preset=result.preset,
        detected=result.detected,
        records=result.records,
        written=len(train),
        validation_written=len(validation),
        duplicates_dropped=result.duplicates_dropped,
        skipped=result.skipped,
        outputs=[str(t) for t in targets],
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
            raise DataError(
                f"cannot tell the format of {source.location}: keys {_keys(source.value)}",
                hint="name it with --preset, or map fields: --map user=FIELD --map assistant=FIELD",
            )
    raise DataError("no readable record to detect the format from")


def _keys(value: Any) -> str:
    return ", ".join(sorted(value)[:8]) if isinstance(value, dict) else type(value).__name__


def _first_reason(result: ConvertResult) -> str | None:
    return f"{result.skipped[0].location}: {result.skipped[0].reason}" if result.skipped else None
