"""Thin Typer commands: parse, call the data/service layer, render. One module per command."""
