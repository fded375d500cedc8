"""`convert`: raw datasets (JSONL, JSON, CSV/TSV) → OpenAI chat or DPO JSONL, through presets."""
