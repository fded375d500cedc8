"""The Ollama Modelfile of a merged export speaks the base's chat format: for each family Ollama knows (ChatML, Llama 3,
Gemma, Mistral), the Modelfile's Go template renders a conversation exactly as the model's own Jinja template does
(the templates below are the families' published ones), and its stop tokens end a reply."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("jinja2", reason="the local backend needs the `local` extra (scripts/test installs it)")
pytestmark = [pytest.mark.local]

from ftcli.data.local_bases import CHATML  # noqa: E402
from ftcli.server.model_export import modelfile  # noqa: E402

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | "
    "trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% endif %}{% endfor %}"
)


def jinja(template: str, messages: list[dict[str, str]], eos: str) -> str:
    import jinja2

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    return (
        jinja2.Environment()
        .from_string(template)
        .render(
            messages=messages, bos_token="", eos_token=eos, add_generation_prompt=False, raise_exception=raise_exception
        )
    )


def go(template: str, values: dict[str, str]) -> str:
    """Just enough of Go's text/template for Ollama's chat templates: `{{ if .X }}…{{ end }}` and `{{ .X }}`."""
    conditional = re.compile(r"\{\{ if \.(\w+) \}\}(.*?)\{\{ end \}\}", re.S)
    text = conditional.sub(lambda m: m[2] if values.get(m[1]) else "", template)
    return re.sub(r"\{\{ \.(\w+) \}\}", lambda m: values.get(m[1], ""), text)


def parsed(text: str) -> tuple[str | None, list[str]]:
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M)
    stops = re.findall(r'^PARAMETER stop "(.*)"$', text, re.M)
    return (template[1] if template else None), stops


@pytest.mark.parametrize(
    ("family", "jinja_template", "eos", "with_system", "end"),
    [
        ("chatml", CHATML, "<|im_end|>", True, "<|im_end|>"),
        ("llama3", LLAMA3, "<|eot_id|>", True, "<|eot_id|>"),
        ("gemma", GEMMA, "<eos>", False, "<end_of_turn>"),
        ("mistral", MISTRAL, "</s>", False, "</s>"),
    ],
)
def test_the_modelfile_renders_as_the_models_own_template(
    family: str, jinja_template: str, eos: str, with_system: bool, end: str
) -> None:
    text = modelfile(SimpleNamespace(chat_template=jinja_template, eos_token=eos))
    assert text.startswith("FROM .\n")
    template, stops = parsed(text)
    assert template is not None, family
    values = {"System": "你是法律助理。" if with_system else "", "Prompt": "合同何时成立？", "Response": "承诺生效时。"}
    messages: list[dict[str, Any]] = [{"role": "user", "content": values["Prompt"]}]
    if with_system:
        messages.insert(0, {"role": "system", "content": values["System"]})
    expected = jinja(jinja_template, [*messages, {"role": "assistant", "content": values["Response"]}], eos)
    rendered = go(template, values)
    assert expected in (rendered, rendered + eos), (rendered, expected)  # the model writes its own end of sequence
    assert end in stops and eos in stops and len(stops) == len(set(stops))  # a reply ends at its turn's end


def test_an_unknown_family_leaves_the_template_to_ollama() -> None:
    text = modelfile(SimpleNamespace(chat_template="{{ messages[0]['content'] }}", eos_token="<end>"))
    template, stops = parsed(text)
    assert template is None and "tokenizer_config.json" in text and stops == ["<end>"]
