"""The data core: record formats, readers, lint rules, tokenizers, statistics. Pure: no UI, no network."""
