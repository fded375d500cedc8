"""The commands `ftcli models export` prints (issue 29): offline for a base whose folder is on this machine."""

from __future__ import annotations

import shlex
from pathlib import Path

from ftcli.service.model_export import serve_commands

MODEL = "ft:ftcli/tiny:local:legal:ftjob-1"


def test_an_adapter_of_a_local_base_is_served_from_the_base_folder_offline(tmp_path: Path) -> None:
    base = tmp_path / "bases" / "ftcli-tiny"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")
    out = tmp_path / "legal adapter"
    vllm, python = serve_commands(MODEL, "adapter", out, {"name": "ftcli/tiny", "folder": str(base)})
    assert shlex.split(vllm) == [
        "HF_HUB_OFFLINE=1", "vllm", "serve", str(base), "--enable-lora", "--lora-modules", f"legal={out}",
    ]  # fmt: skip
    words = shlex.split(python)
    assert words[:3] == ["HF_HUB_OFFLINE=1", "python", "-c"]
    assert f'M.from_pretrained("{base}")' in words[3] and f'"{out}"' in words[3]


def test_without_the_base_folder_here_the_base_is_named_as_the_job_named_it(tmp_path: Path) -> None:
    remote = {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "folder": "/srv/other-machine/smollm2"}
    vllm, _ = serve_commands(MODEL, "adapter", tmp_path / "a", remote)
    assert shlex.split(vllm)[:3] == ["vllm", "serve", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    older_server, _ = serve_commands(MODEL, "adapter", tmp_path / "a", None)
    assert shlex.split(older_server)[:3] == ["vllm", "serve", "ftcli/tiny"]


def test_a_merged_export_is_served_from_its_own_folder_offline(tmp_path: Path) -> None:
    vllm, ollama, python = serve_commands(MODEL, "merged", tmp_path / "merged", None)
    assert shlex.split(vllm) == ["HF_HUB_OFFLINE=1", "vllm", "serve", str(tmp_path / "merged")]
    assert shlex.split(ollama) == ["ollama", "create", "legal", "-f", str(tmp_path / "merged" / "Modelfile")]
    assert python.startswith("HF_HUB_OFFLINE=1 python -c ")
