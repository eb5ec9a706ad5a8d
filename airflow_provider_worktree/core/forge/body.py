"""A pull request's text: a sandboxed Jinja template over the run's report, model-written text neutralised, and a
hidden marker naming the changeset.

Neutralising (the model and the repository are untrusted; their text reaches every reader of the pull request):
``@name`` gets a zero-width joiner after the ``@`` (GitHub then links and notifies no one, the text reads the same);
``<`` and ``>`` become entities so no HTML tag, comment or ``<details>`` hides content; the whole body stays under
:data:`MAX_BODY_CHARS` (GitHub refuses longer), cut in the middle with a note. The template itself (the DAG
author's) is trusted, and so is the marker added after neutralising.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: GitHub's limit on a pull request body is 65,536 characters; a margin for the marker.
MAX_BODY_CHARS = 65_000
_MENTION = re.compile(r"(?<![\w`])@(?=[A-Za-z0-9][A-Za-z0-9-]*(?:/[A-Za-z0-9._-]+)?)")

DEFAULT_TITLE = "{{ task }}: automated maintenance ({{ totals.accepted }} of {{ totals.shards }} shards)"
DEFAULT_BODY = """\
Automated maintenance by airflow-provider-worktree: task **{{ task }}** on `{{ repository }}`.

| | |
|---|---|
| shards | {{ totals.shards }} ({% for k, v in totals.by_status.items() %}{{ k }}: {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}) |
| files changed | {{ totals.files_changed }} |
| tokens | input {{ totals.input_total }} (uncached {{ totals.input_tokens }} + cache read {{ totals.cache_read_tokens }} + cache write {{ totals.cache_write_tokens }}), output {{ totals.output_tokens }} |
| cost | ${{ '%.4f' % totals.cost_usd }}{% if totals.offline %} (offline test double, not billed){% endif %} |
| Airflow run | {% if run_url %}[`{{ run_id }}`]({{ run_url }}){% else %}`{{ run_id }}`{% endif %} |

{% for s in shards %}- `{{ s.shard_id }}` {{ s.status }}{% if s.diffstat %}: {{ s.diffstat.strip().splitlines()[-1] }}{% endif %}{% if s.error_message %}: {{ s.error_message.splitlines()[0] }}{% endif %}
{% endfor %}
"""


def neutralise(text: Any) -> str:
    """Model- or repository-written text made safe for a pull request body or comment."""
    out = str(text if text is not None else "")
    out = out.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u200d", out)


def _neutralised(value: Any) -> Any:
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, Mapping):
        return {k: _neutralised(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_neutralised(v) for v in value]
    return value


def changeset_marker(repository: str, head: str) -> str:
    """The hidden line that identifies a changeset's pull request and comments (a retried POST is recognised)."""
    return f"<!-- airflow-worktree changeset {repository}#{head} -->"


def render_body(template: str | None, context: Mapping[str, Any], *, marker: str = "") -> str:
    """``template`` (default :data:`DEFAULT_BODY`) rendered in a sandbox over ``context`` whose strings are
    neutralised first; bounded to :data:`MAX_BODY_CHARS`; ``marker`` appended."""
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
    text = env.from_string(template or DEFAULT_BODY).render(**_neutralised(dict(context)))
    room = MAX_BODY_CHARS - len(marker) - 100
    if len(text) > room:
        cut = len(text) - room
        text = (text[: room // 2] + f"\n\n[... {cut:,} characters cut: the run report has all of it ...]\n\n"
                + text[-(room // 2):])
    return text.rstrip() + ("\n\n" + marker if marker else "") + "\n"


def render_title(template: str | None, context: Mapping[str, Any]) -> str:
    from jinja2.sandbox import SandboxedEnvironment

    title = SandboxedEnvironment().from_string(template or DEFAULT_TITLE).render(**_neutralised(dict(context)))
    return " ".join(title.split())[:250] or "automated maintenance"
