"""The check engine: `scan` streams a file in chunks across processes, `lint` reads each line and runs the rules of
data/rules/ on it, `engine` adds the file-level rules, stamps severities and builds the `report`. The rules live in
data/rules/ (one table of codes in rules/registry.py) and know nothing of this package."""
