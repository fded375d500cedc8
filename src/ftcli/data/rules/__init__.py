"""Lint rules. `registry.RULES` lists every code; the modules beside it decide and yield findings."""
