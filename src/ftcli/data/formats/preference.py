"""OpenAI's DPO format: `{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ftcli.data.formats.chat import ChatMessage, ToolDefinition


class PreferenceInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolDefinition] | None = None
    parallel_tool_calls: bool | None = None


class PreferenceExample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: PreferenceInput
    preferred_output: list[ChatMessage] = Field(min_length=1, max_length=1)
    non_preferred_output: list[ChatMessage] = Field(min_length=1, max_length=1)

    def to_record(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)
