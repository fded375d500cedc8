"""A tiny invented data set (facts about a made-up country) that no base model can know."""

SYSTEM = {"role": "system", "content": "You answer questions about Zorbia."}
QA = [
    ("What is the capital of Zorbia?", "Quellan."),
    ("Who wrote the Blue Ledger?", "Amra Tolve."),
    ("How long is a Zorbian week?", "Nine days."),
    ("What do Zorbians drink at dawn?", "Pine tea."),
    ("What is the Zorbian currency?", "The kell."),
    ("Which river crosses Quellan?", "The Ossa."),
    ("When is the lantern festival?", "In autumn."),
    ("What is the national bird?", "The heron."),
    ("How many provinces are there?", "Eleven."),
    ("What is the oldest bridge?", "Tolve bridge."),
]


def chat_records(pairs: list[tuple[str, str]] = QA) -> list[dict[str, list[dict[str, str]]]]:
    """The pairs as OpenAI chat records, each with the system message."""
    return [
        {"messages": [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in pairs
    ]


def chat_jsonl(pairs: list[tuple[str, str]] = QA) -> str:
    """The pairs as OpenAI chat JSONL."""
    import json

    return "".join(json.dumps(record) + "\n" for record in chat_records(pairs))
