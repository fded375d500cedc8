"""OpenAI's wire format for the local backend, apart from serving logic (as vLLM keeps its protocol models apart
from its server): requests are read leniently as OpenAI does (unknown fields ignored), responses are exact (no field
the spec lacks; checked against OpenAI's OpenAPI spec by tests/e2e/test_spec_responses.py)."""
