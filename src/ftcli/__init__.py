"""ftcli: the whole fine-tuning loop for chat models, on OpenAI's protocol and on your own machine."""

__version__ = "0.1.0"
