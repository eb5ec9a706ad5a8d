"""The offline test double's token accounting and prompt cache.

Token counts are a stand-in (about 4 bytes of canonical JSON per token, per content segment) but consistent:
``count_tokens`` returns exactly what ``/v1/messages`` bills as input for the same request. The prompt cache
works like the real API's: a request's prompt is cut into segments in cache order (tools, system, messages); a
cached prefix is found at any earlier segment boundary, and entries are written at the request's
``cache_control`` breakpoints.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from typing import Any


def json_tokens(obj: Any, bytes_per_token: int = 4) -> int:
    """The stand-in token count of ``obj``: its canonical compact JSON, ``bytes_per_token`` UTF-8 bytes a token."""
    raw = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return max(1, math.ceil(len(raw.encode("utf-8")) / bytes_per_token))


def strip_cache_control(obj: Any) -> Any:
    """``obj`` without its ``cache_control`` markers (they are not billed and do not change what is cached)."""
    if isinstance(obj, dict):
        return {k: strip_cache_control(v) for k, v in obj.items() if k != "cache_control"}
    if isinstance(obj, list):
        return [strip_cache_control(v) for v in obj]
    return obj


def tokens(obj: Any) -> int:
    """What the double bills for ``obj`` (a prompt segment or a reply's content)."""
    return json_tokens(strip_cache_control(obj))


def segments(body: dict[str, Any]) -> list[tuple[Any, bool]]:
    """The prompt in cache order (tools, system, messages) as (segment, has_cache_control) pairs."""
    segs: list[tuple[Any, bool]] = []
    for tool in body.get("tools") or []:
        segs.append((tool, isinstance(tool, dict) and "cache_control" in tool))
    system = body.get("system")
    if isinstance(system, str):
        segs.append(({"system": system}, False))
    elif isinstance(system, list):
        for block in system:
            segs.append((block, isinstance(block, dict) and "cache_control" in block))
    for m in body.get("messages") or []:
        content = m.get("content")
        if isinstance(content, str):
            segs.append(({"role": m.get("role"), "text": content}, False))
        elif isinstance(content, list):
            segs.append(({"role": m.get("role")}, False))
            for block in content:
                segs.append((block, isinstance(block, dict) and "cache_control" in block))
    return segs


def count_request(body: dict[str, Any]) -> int:
    """The input tokens of a request (what ``count_tokens`` answers)."""
    return sum(tokens(s) for s, _ in segments(body))


class PromptCache:
    """The prompt cache of one server: digests of the cached prompt prefixes (per model). Thread-safe."""

    def __init__(self) -> None:
        self._digests: set[str] = set()
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._digests.clear()

    def bill_input(self, body: dict[str, Any], min_tokens: int = 0, *, update: bool = True) -> tuple[int, int, int]:
        """(input, cache_write, cache_read) tokens of ``body``, updating the cache (``update=False``: only what
        they would be, for the rate limiter's admission); a prompt shorter than ``min_tokens`` is not cached."""
        segs = segments(body)
        sizes = [tokens(s) for s, _ in segs]
        total = sum(sizes)
        model = str(body.get("model"))
        breakpoints = [i for i, (_, cc) in enumerate(segs) if cc]
        if not breakpoints or total < min_tokens:
            return total, 0, 0
        # Like the real API, a cached prefix is found at any earlier block boundary (not only at this request's
        # breakpoints), and entries are written at this request's breakpoints.
        last = breakpoints[-1]
        digests, h = [], hashlib.sha256(model.encode())
        for seg, _ in segs[: last + 1]:
            h.update(json.dumps(strip_cache_control(seg), sort_keys=True).encode())
            digests.append(h.hexdigest())
        with self._lock:
            hit = max((i for i, d in enumerate(digests) if d in self._digests), default=-1)
            if update:
                self._digests.update(digests[i] for i in breakpoints)
        read = sum(sizes[: hit + 1])
        write = sum(sizes[hit + 1: last + 1]) if last > hit else 0
        return total - read - write, write, read
