"""Record models in OpenAI's names: chat (SFT), preference (DPO) and the legacy prompt/completion format."""
