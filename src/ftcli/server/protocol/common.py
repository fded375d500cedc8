"""What every protocol model shares: exact responses, lenient requests, and OpenAI's list page."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)


class Response(BaseModel):
    """A response object: exactly the fields declared (a typo'd or extra field is a bug, not a feature). Fields in
    `omitted_when_none` are left out rather than sent as null, where the spec has them optional but not nullable."""

    model_config = ConfigDict(extra="forbid")
    omitted_when_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_nones(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        for name in self.omitted_when_none:
            if dumped.get(name, 0) is None:
                del dumped[name]
        return dumped

    @classmethod
    def from_row(cls, row: Any, **extra: Any) -> Self:
        """From a database row (or dict): the columns named like fields, plus `extra`."""
        known = {key: row[key] for key in row.keys() if key in cls.model_fields}  # noqa: SIM118 (sqlite3.Row)
        return cls.model_validate({**known, **extra})


class Request(BaseModel):
    """A request body: fields ftcli doesn't know are ignored, as OpenAI ignores them."""

    model_config = ConfigDict(extra="ignore")


def _printable(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("a model id has no control characters")  # a NUL would reach paths and file names
    return value


# A model's name, a Hugging Face id, or a folder under the server's model roots (at most a long path).
ModelId = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_printable)]

RequestT = TypeVar("RequestT", bound=Request)
ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(Response, Generic[ItemT]):
    object: Literal["list"] = "list"
    data: list[ItemT]
    has_more: bool = False


class CursorPage(Page[ItemT], Generic[ItemT]):
    """A page that names its first and last item (files, checkpoints)."""

    first_id: str | None = None
    last_id: str | None = None


class InvalidRequest(ValueError):
    """A request body that doesn't fit its model: the first problem, with its JSON path as OpenAI's `param`."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def parse(model: type[RequestT], body: dict[str, Any]) -> RequestT:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequest(f"{param}: {first['msg']}" if param else first["msg"], param) from None
