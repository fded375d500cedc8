"""HTTP routers, one per resource, speaking OpenAI's protocol. Handlers are short: they translate between the wire
and the store/runner/inference, and raise `ApiError` for OpenAI's error envelope."""
