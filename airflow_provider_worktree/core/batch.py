"""Batch mode: every shard of a run as one entry of a Message Batch (half price), applied per shard later."""

from __future__ import annotations

#: The last user turn of a batch request ends with this: there is no second turn, so every edit goes in the one
#: reply. (The offline test double looks for it to make all its edits at once.)
ONE_RESPONSE_INSTRUCTION = (
    "This request is processed in a batch and gets exactly one response: there is no second turn, and the "
    "results of your tool calls are not shown to you. The files of the shard are shown above in full. Make every "
    "edit now, in this one reply, as str_replace_based_edit_tool calls (str_replace, insert or create; no view), "
    "then stop."
)
