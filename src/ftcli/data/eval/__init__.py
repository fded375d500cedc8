"""`ftcli eval`'s pure parts: the cases read from a chat JSONL file (`cases`), the graders that score an answer
against its reference (`graders`), and the statistics of the scores (`stats`). No network, no UI."""
