"""What an OpenAI chat-completions request asks of the network, field by field, and the shaping of
the network's answer into the reply it asked for. Pure: no I/O (``api.openai_compat`` serves it).

Field policy: every field OpenAI defines is honoured or refused with a 400 in OpenAI's error shape,
never ignored; unknown top-level fields are refused as OpenAI refuses them ("Unrecognized request
argument supplied"). ``symphony`` is this network's extension (``extra_body`` in the clients).

- honoured: ``model`` (``symphony``), ``messages`` (the conversation, below), ``stream``,
  ``stream_options``, ``n`` (1 only), ``temperature`` (0..2: the executors' sampling temperature),
  ``max_tokens`` / ``max_completion_tokens`` (either one: the reply's text is cut to that many
  tokens, counted as whitespace-separated words like the network's token-less backends, with
  ``finish_reason: "length"``), ``stop`` (up to 4: the answer ends before the first one),
  ``response_format`` (below), ``tools`` / ``tool_choice`` / ``parallel_tool_calls`` (below),
  ``user`` (an opaque end-user ID; OpenAI uses it only to monitor abuse, and so changes no answer).
- refused unless left at their default: ``top_p`` (1), ``presence_penalty`` and
  ``frequency_penalty`` (0), ``logit_bias``, ``logprobs``, ``top_logprobs``, ``seed`` (a network of
  sampling models is not reproducible), ``store`` (false), ``metadata``, ``modalities`` (text),
  ``audio``, ``prediction``, ``reasoning_effort``, ``service_tier``, ``web_search_options``,
  ``functions`` / ``function_call`` (use ``tools``).
- content parts other than text (images, audio, files): 400; the network reads text.

Conversation: the last user message is the question; every other message (system and developer
text first, then the turns in order) is its context for planners and executors, within
``asking.CONTEXT_BUDGET_CHARS`` (about 1,500 tokens, for 0.5B models' small windows): system text is kept
first (clipped to half the budget), then the newest turns that fit; older turns are dropped whole,
and the reply's ``symphony.context`` says how many (never silently).

Structured answers: the network answers one value (a number, an option, yes/no, text or code). A
JSON answer or a tool call therefore needs a schema with exactly one property, which the answer
fills (typed: integer, number, boolean or string) and which is then validated against the whole
schema (``jsonschema``). ``response_format: json_object`` gives ``{"answer": ...}``. A tool call is
made when ``tool_choice`` is ``"required"`` (one tool) or names a function; under ``"auto"`` (the
default) and ``"none"`` the network answers in ``content``, which ``auto`` allows: it lets the model
choose not to call a tool. Schemas the network cannot fill are refused before anything runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from symphony.api.asking import MAX_QUESTION_CHARS, MODEL_ID, Conversation, question_problem, split_conversation
from symphony.api.http import OptionsBody
from symphony.pipeline.extraction import AnswerKind

#: Fields OpenAI defines that the network cannot honour, with the only value it accepts for each.
REFUSED_UNLESS_DEFAULT: dict[str, Any] = {
    "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {}, "logprobs": False,
    "top_logprobs": 0, "seed": None, "store": False, "metadata": {}, "modalities": ["text"], "audio": None,
    "prediction": None, "reasoning_effort": None, "service_tier": None, "web_search_options": None,
    "functions": None, "function_call": None,
}
_SCALARS: dict[str, AnswerKind | None] = {"integer": "number", "number": "number", "boolean": "yes_no", "string": None}


class OpenAIError(Exception):
    """An error answered in OpenAI's JSON shape ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, retry: bool = True,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry = retry  # False: the reply tells clients not to retry (``x-should-retry: false``)
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code, **(extra or {})}}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, tool_call_id: rendered into the context

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content)
        return self.content or ""

    def line(self) -> str:
        """The message as a line of the context: ``Role: text`` (a tool call or result says so)."""
        extra = self.model_extra or {}
        text = self.text()
        if extra.get("tool_calls"):
            text = f"{text} [called {json.dumps(extra['tool_calls'])[:500]}]".strip()
        name = f" ({extra['name']})" if isinstance(extra.get("name"), str) else ""
        return f"{self.role.capitalize()}{name}: {text}"


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")  # description, strict

    name: str = Field(min_length=1, max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict)


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow")  # description, strict

    name: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatCompletionRequest(BaseModel):
    """A chat completion request: the fields of the policy above (``extra="forbid"``: unknown ones are refused)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None  # the network makes one call at most: any value holds
    response_format: ResponseFormat | None = None
    user: str | None = Field(default=None, max_length=256)
    symphony: OptionsBody = Field(default_factory=OptionsBody)
    # refused unless at their defaults (REFUSED_UNLESS_DEFAULT)
    top_p: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    logit_bias: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    seed: Any = None
    store: Any = None
    metadata: Any = None
    modalities: Any = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    service_tier: Any = None
    web_search_options: Any = None
    functions: Any = None
    function_call: Any = None


@dataclass(frozen=True)
class Slot:
    """The one property of a JSON answer or tool call that the network's answer fills."""

    schema: dict[str, Any]
    name: str | None  # None: the whole value is ``{"answer": answer}`` (json_object)
    type_: str

    def fill(self, answer: str) -> str:
        """The JSON text of the answer in this slot; ``OpenAIError`` (no retry) when it does not fit."""
        value: Any = answer
        try:
            if self.type_ == "integer":
                number = float(answer.replace(",", ""))
                if not number.is_integer():
                    raise ValueError(f"{answer!r} is not an integer")
                value = int(number)
            elif self.type_ == "number":
                value = float(answer.replace(",", ""))
                value = int(value) if value.is_integer() else value
            elif self.type_ == "boolean":
                if answer.strip().lower() not in ("yes", "no", "true", "false"):
                    raise ValueError(f"{answer!r} is not yes or no")
                value = answer.strip().lower() in ("yes", "true")
            document = {self.name or "answer": value}
            jsonschema.validate(document, self.schema)
        except (ValueError, jsonschema.ValidationError) as exc:
            message = exc.message if isinstance(exc, jsonschema.ValidationError) else str(exc)
            raise OpenAIError(502, f"the network's answer {answer[:200]!r} does not fit the schema: {message}",
                              type_="server_error", code="answer_does_not_fit", retry=False) from None
        return json.dumps(document)


@dataclass(frozen=True)
class Shape:
    """What the reply must look like: a tool call, JSON, or text; cut at ``stop`` or ``max_tokens``."""

    slot: Slot | None = None
    tool: str | None = None  # the function called with the slot's JSON as its arguments
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    answer_kind: AnswerKind | None = None  # what the slot's type asks of the network

    def output(self, answer: str) -> tuple[str, str]:
        """(the reply's text: content or tool arguments, finish_reason)."""
        text = answer
        finish = "tool_calls" if self.tool else "stop"
        if self.slot is not None:
            text = self.slot.fill(answer)
        else:
            text = cut_at_stop(text, self.stop)
        if self.max_tokens is not None:
            capped = cap_tokens(text, self.max_tokens)
            if capped != text:
                return capped, "length"
        return text, finish


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """``text`` up to the first occurrence of any stop sequence (OpenAI leaves the sequence out)."""
    ends = [i for s in stop if (i := text.find(s)) >= 0]
    return text[: min(ends)] if ends else text


def cap_tokens(text: str, limit: int) -> str:
    """``text`` cut after its ``limit``-th whitespace-separated word (the network's token estimate)."""
    words = list(re.finditer(r"\S+", text))
    return text if len(words) <= limit else text[: words[limit - 1].end()]


def parse_request(body: Any) -> ChatCompletionRequest:
    """The request, validated; ``OpenAIError`` (400/404) names the field at fault."""
    if not isinstance(body, dict):
        raise OpenAIError(400, "body must be a JSON object")
    try:
        chat = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(p) for p in error["loc"])
        if error["type"] == "extra_forbidden":
            raise OpenAIError(400, f"Unrecognized request argument supplied: {param}", param=param) from None
        raise OpenAIError(400, f"invalid {param}: {error['msg']}", param=param) from None
    if chat.model != MODEL_ID:
        raise OpenAIError(404, f"the model {chat.model[:100]!r} does not exist; this network serves {MODEL_ID!r}",
                          param="model", code="model_not_found")
    for name, default in REFUSED_UNLESS_DEFAULT.items():
        value = getattr(chat, name)
        if value is not None and value != default:
            raise OpenAIError(400, f"{name}={json.dumps(value)[:100]} is not supported by this network "
                              f"(only {json.dumps(default)})", param=name, code="unsupported_parameter")
    _check_content(chat.messages)
    return chat


def _check_content(messages: list[Message]) -> None:
    for i, message in enumerate(messages):
        for j, part in enumerate(message.content if isinstance(message.content, list) else []):
            if part.type != "text" or part.text is None:
                raise OpenAIError(400, f"{part.type} content parts are not supported: the network reads text only",
                                  param=f"messages.{i}.content.{j}.type", code="unsupported_content")


def conversation(messages: list[Message]) -> Conversation:
    """The last user message as the question, the rest as its context (``asking.fit_conversation``)."""
    talk = split_conversation(messages, system_roles=("system", "developer"))
    problem = question_problem(talk.question)
    if problem == "empty":
        raise OpenAIError(400, "the last user message is empty: it is the question", param="messages")
    if problem == "too_long":
        raise OpenAIError(400, f"the question is longer than {MAX_QUESTION_CHARS} characters",
                          param="messages", code="question_too_long")
    return talk


def shape(chat: ChatCompletionRequest) -> Shape:
    """What the reply must look like; ``OpenAIError`` 400 for a combination the network cannot honour."""
    if chat.max_tokens is not None and chat.max_completion_tokens is not None:
        raise OpenAIError(400, "give max_tokens or max_completion_tokens, not both", param="max_tokens")
    max_tokens = chat.max_completion_tokens or chat.max_tokens
    stop = (chat.stop,) if isinstance(chat.stop, str) else tuple(chat.stop or ())
    if len(stop) > 4 or any(not s for s in stop):
        raise OpenAIError(400, "stop takes up to 4 non-empty strings", param="stop")
    tool, slot = _tool_call(chat)
    if slot is None:
        slot = _json_slot(chat.response_format)
    elif chat.response_format is not None and chat.response_format.type != "text":
        raise OpenAIError(400, "a tool call and a JSON response_format cannot both shape one answer",
                          param="response_format")
    if slot is not None and stop:
        raise OpenAIError(400, "stop cannot cut a JSON answer or tool call (it would break the JSON)", param="stop")
    return Shape(slot=slot, tool=tool, stop=stop, max_tokens=max_tokens,
                 answer_kind=_SCALARS.get(slot.type_) if slot else None)


def _tool_call(chat: ChatCompletionRequest) -> tuple[str | None, Slot | None]:
    """The function the reply must call and its slot, or (None, None) when it answers in content."""
    tools = {t.function.name: t.function for t in chat.tools or []}
    choice = chat.tool_choice
    if choice is None or choice in ("none", "auto"):
        return None, None
    if not tools:
        raise OpenAIError(400, "tool_choice needs tools", param="tool_choice")
    if isinstance(choice, NamedToolChoice):
        name = choice.function.name
        if name not in tools:
            raise OpenAIError(400, f"tool_choice names {name!r}, which is not in tools", param="tool_choice")
    elif len(tools) == 1:  # "required"
        name = next(iter(tools))
    else:
        raise OpenAIError(400, "the network answers with one call: with several tools, name the function "
                          "in tool_choice", param="tool_choice")
    return name, _slot(tools[name].parameters, param="tools")


def _json_slot(response_format: ResponseFormat | None) -> Slot | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return Slot(schema={"type": "object"}, name=None, type_="string")
    if response_format.json_schema is None:
        raise OpenAIError(400, "response_format json_schema needs its json_schema", param="response_format")
    return _slot(response_format.json_schema.schema_, param="response_format")


def _slot(schema: dict[str, Any], *, param: str) -> Slot:
    """The one scalar property of an object ``schema``; 400 when there is not exactly one."""
    properties = schema.get("properties") if schema.get("type", "object") == "object" else None
    if not isinstance(properties, dict) or len(properties) != 1:
        raise OpenAIError(400, "the network answers one value: the schema must be an object with exactly one "
                          f"property, not {sorted(properties or {})[:8]}", param=param, code="unsupported_schema")
    (name, prop), = properties.items()
    type_ = prop.get("type", "string") if isinstance(prop, dict) else None
    if type_ not in _SCALARS:
        raise OpenAIError(400, f"property {name!r} must be a string, number, integer or boolean, not {type_!r}",
                          param=param, code="unsupported_schema")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise OpenAIError(400, f"invalid JSON schema: {exc.message}", param=param) from None
    return Slot(schema=schema, name=name, type_=type_)
