"""Model prices in $/MTok (:class:`PriceTable`, :data:`DEFAULT_PRICES`) and the Message Batches discount.

Imports ``core.errors`` and the runners' types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.core.runners.types import Usage


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    @classmethod
    def of(cls, value: Any) -> ModelPrice:
        """From a ModelPrice, a mapping with input/output[/cache_write/cache_read], or a 2- or 4-sequence."""
        if isinstance(value, ModelPrice):
            return value
        if isinstance(value, Mapping):
            try:
                inp, out = float(value["input"]), float(value["output"])
            except (KeyError, TypeError, ValueError):
                raise ConfigurationError(f"price {dict(value)!r} needs numeric 'input' and 'output' $/MTok "
                                         "(and optionally 'cache_write', 'cache_read').") from None
            return cls(inp, out, float(value.get("cache_write", inp * 1.25)), float(value.get("cache_read", inp * 0.1)))
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (2, 4):
            nums = [float(v) for v in value]
            return cls(*nums) if len(nums) == 4 else cls(nums[0], nums[1], nums[0] * 1.25, nums[0] * 0.1)
        raise ConfigurationError(f"price {value!r} is not understood: give {{'input': 3, 'output': 15}} in $/MTok.")


def _p(inp: float, out: float) -> ModelPrice:
    return ModelPrice(inp, out, round(inp * 1.25, 4), round(inp * 0.1, 4))


#: List prices in $/MTok (5-minute cache writes at 1.25x input, cache reads at 0.1x input). Keys are model-id
#: prefixes; the longest matching prefix wins. Check https://www.anthropic.com/pricing and override as needed.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-2025": _p(15.0, 75.0),  # Claude Opus 4 (claude-opus-4-20250514)
    "claude-opus-4-0": _p(15.0, 75.0),
    "claude-opus-4-1": _p(15.0, 75.0),
    "claude-opus-4": _p(5.0, 25.0),  # Opus 4.5 and later
    "claude-sonnet-4": _p(3.0, 15.0),
    "claude-3-7-sonnet": _p(3.0, 15.0),
    "claude-3-5-sonnet": _p(3.0, 15.0),
    "claude-haiku-4": _p(1.0, 5.0),
    "claude-3-5-haiku": _p(0.8, 4.0),
    "claude-3-haiku": _p(0.25, 1.25),
    "claude-3-opus": _p(15.0, 75.0),
}
#: For unknown models (newer families included): the most expensive list price above, so a budget never
#: under-counts. Set real prices with ``PriceTable({"model-prefix": {"input": .., "output": ..}})``.
DEFAULT_PRICE = _p(15.0, 75.0)
#: The Message Batches API bills every token kind (input, output, cache writes and reads) at this share of the
#: list price. Override per table with ``PriceTable(batch_factor=...)``.
BATCH_FACTOR = 0.5


class PriceTable:
    """Per-model prices in $/MTok, user-settable.

    ``PriceTable({"my-model": {"input": 3, "output": 15}}, default=None, include_defaults=True)``; entries are
    model-id prefixes (longest match wins), merged over :data:`DEFAULT_PRICES`. Models matching nothing use
    ``default`` (the most expensive list price unless given). :meth:`for_batch` is the table at Message Batches
    prices (``batch_factor``, :data:`BATCH_FACTOR` of list price).
    """

    def __init__(self, prices: Mapping[str, Any] | None = None, *, default: Any = None,
                 include_defaults: bool = True, batch_factor: float = BATCH_FACTOR) -> None:
        self.prices: dict[str, ModelPrice] = dict(DEFAULT_PRICES) if include_defaults else {}
        for model, price in (prices or {}).items():
            self.prices[str(model)] = ModelPrice.of(price)
        self.default = ModelPrice.of(default) if default is not None else DEFAULT_PRICE
        if not isinstance(batch_factor, (int, float)) or isinstance(batch_factor, bool) or not 0 < batch_factor <= 1:
            raise ConfigurationError(f"batch_factor={batch_factor!r} must be a number in (0, 1] (the Message Batches "
                                     "API's share of the list price, 0.5).")
        self.batch_factor = float(batch_factor)

    def for_batch(self) -> PriceTable:
        """The same table at Message Batches prices (every price times :attr:`batch_factor`)."""
        def scaled(p: ModelPrice) -> ModelPrice:
            f = self.batch_factor
            return ModelPrice(p.input * f, p.output * f, p.cache_write * f, p.cache_read * f)

        table = PriceTable({k: scaled(v) for k, v in self.prices.items()}, default=scaled(self.default),
                           include_defaults=False, batch_factor=1.0)
        return table

    def set(self, model: str, *, input: float, output: float, cache_write: float | None = None,
            cache_read: float | None = None) -> None:
        self.prices[model] = ModelPrice(input, output, input * 1.25 if cache_write is None else cache_write,
                                        input * 0.1 if cache_read is None else cache_read)

    def price(self, model: str | None) -> ModelPrice:
        if model:
            if model in self.prices:
                return self.prices[model]
            matches = [k for k in self.prices if model.startswith(k)]
            if matches:
                return self.prices[max(matches, key=len)]
        return self.default

    def cost(self, usage: Usage, model: str | None) -> float:
        p = self.price(model)
        return (usage.input_tokens * p.input + usage.output_tokens * p.output
                + usage.cache_write_tokens * p.cache_write + usage.cache_read_tokens * p.cache_read) / 1_000_000


