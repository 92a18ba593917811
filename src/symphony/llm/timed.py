"""A timed stand-in model for systems benchmarks: it takes a model's time, not a model's thought.

``TimedModel`` computes no answer. It sleeps (``anyio.sleep``, so a mock clock can drive it) for

    prompt_tokens / prompt_tokens_per_s + completion_tokens / tokens_per_s

and returns a fixed-length filler reply ending in ``\\boxed{0}``, so that network, queueing and
scheduling costs can be measured at scale with a realistic, exactly known model latency. Prompt
tokens are counted as words; ``prompt_tokens_per_s`` defaults to ``PREFILL_RATIO`` times
``tokens_per_s``, the ratio measured for Qwen2.5-Coder-0.5B in llama.cpp on 2 CPU cores (about 35
tokens/s decoding, 90 tokens/s prefill; a GPU server's ratio is far higher: pass it). Every
``Completion`` has ``stand_in=True``.
"""

from __future__ import annotations

import math
from typing import Any, Final

import anyio

from symphony.llm.base import Completion, approx_tokens, check_chat_args

DEFAULT_REPLY_TOKENS: Final = 32
PREFILL_RATIO: Final = 2.5
_FILLER: Final = "stand-in"
_ANSWER: Final = "\\boxed{0}"


class TimedModel:
    """A stand-in generating ``reply_tokens`` tokens (fewer if ``max_tokens`` is lower) at ``tokens_per_s``.

    Args:
        tokens_per_s: decoding speed, tokens per second (> 0).
        reply_tokens: length of every reply, in tokens (words); capped by ``max_tokens``.
        prompt_tokens_per_s: prefill speed; ``None`` means ``PREFILL_RATIO * tokens_per_s``.
        max_concurrent: calls served at once, as by one llama.cpp process (1) or a batching server
            (more); later calls queue. ``None``: no limit. ``latency_s`` excludes the queueing.

    Raises ``ValueError`` for a non-positive or non-finite rate, ``reply_tokens < 1`` or
    ``max_concurrent < 1``.
    """

    supports_json_schema = False

    def __init__(
        self,
        tokens_per_s: float,
        *,
        reply_tokens: int = DEFAULT_REPLY_TOKENS,
        prompt_tokens_per_s: float | None = None,
        max_concurrent: int | None = 1,
    ) -> None:
        prefill = PREFILL_RATIO * tokens_per_s if prompt_tokens_per_s is None else prompt_tokens_per_s
        for label, rate in (("tokens_per_s", tokens_per_s), ("prompt_tokens_per_s", prefill)):
            if not (rate > 0 and math.isfinite(rate)):
                raise ValueError(f"{label} must be a positive number, not {rate!r}")
        if reply_tokens < 1:
            raise ValueError(f"reply_tokens must be >= 1, not {reply_tokens!r}")
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1 or None, not {max_concurrent!r}")
        self._limiter = anyio.CapacityLimiter(max_concurrent) if max_concurrent else None
        self.tokens_per_s = float(tokens_per_s)
        self.prompt_tokens_per_s = float(prefill)
        self.reply_tokens = reply_tokens
        self.name = f"timed stand-in ({self.tokens_per_s:g} tokens/s)"

    def latency_s(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The time a call with these token counts takes."""
        return prompt_tokens / self.prompt_tokens_per_s + completion_tokens / self.tokens_per_s

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        check_chat_args(messages, max_tokens=max_tokens, temperature=temperature)
        prompt_tokens = sum(approx_tokens(m["content"]) for m in messages)
        completion_tokens = min(self.reply_tokens, max_tokens)
        latency = self.latency_s(prompt_tokens, completion_tokens)
        if self._limiter is None:
            await anyio.sleep(latency)
        else:
            async with self._limiter:
                await anyio.sleep(latency)
        text = " ".join([_FILLER] * (completion_tokens - 1) + [_ANSWER])
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          latency_s=latency, model=self.name, stand_in=True)

    async def aclose(self) -> None:
        return None


__all__ = ["DEFAULT_REPLY_TOKENS", "PREFILL_RATIO", "TimedModel"]
