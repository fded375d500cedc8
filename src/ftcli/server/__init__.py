"""The private local backend (`ftcli serve`): OpenAI's fine-tuning protocol on the user's own machine.

Needs the `local` extra (PyTorch, transformers, peft, FastAPI, uvicorn); nothing here is imported by the core CLI.
"""
