"""A repository's files at a commit, read without a checkout: the listing and blobs (``listing``), glob
patterns with git's wildmatch rules (``globs``), the ``.gitattributes`` git reads at the commit (``attributes``),
the default skip rules (``skips``: vendored, generated, fixtures, CI, non-source) and the line ranges of large
files (``ranges``).

May import: ``core.errors``, ``core.git`` and ``core.sandbox``. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ATTRS": "airflow_provider_worktree.core.files.attributes",
    "DOCS_DIRS": "airflow_provider_worktree.core.files.skips",
    "EXAMPLE_DIRS": "airflow_provider_worktree.core.files.skips",
    "FIXTURE_DIRS": "airflow_provider_worktree.core.files.skips",
    "GitAttributes": "airflow_provider_worktree.core.files.attributes",
    "Listing": "airflow_provider_worktree.core.files.listing",
    "R_ATTR_GENERATED": "airflow_provider_worktree.core.files.skips",
    "R_ATTR_VENDORED": "airflow_provider_worktree.core.files.skips",
    "R_CI": "airflow_provider_worktree.core.files.skips",
    "R_DOCS_CONFIG": "airflow_provider_worktree.core.files.skips",
    "R_EDITOR_LIMIT": "airflow_provider_worktree.core.files.skips",
    "R_EXAMPLE": "airflow_provider_worktree.core.files.skips",
    "R_EXCLUDED": "airflow_provider_worktree.core.files.skips",
    "R_FIXTURE": "airflow_provider_worktree.core.files.skips",
    "R_GENERATED": "airflow_provider_worktree.core.files.skips",
    "R_NAME": "airflow_provider_worktree.core.files.skips",
    "R_NOT_SOURCE": "airflow_provider_worktree.core.files.skips",
    "R_SYMLINK": "airflow_provider_worktree.core.files.skips",
    "R_TOO_LARGE": "airflow_provider_worktree.core.files.skips",
    "R_VENDORED": "airflow_provider_worktree.core.files.skips",
    "SOURCE_SUFFIXES": "airflow_provider_worktree.core.files.skips",
    "VENDORED_DIRS": "airflow_provider_worktree.core.files.skips",
    "decode_text": "airflow_provider_worktree.core.files.listing",
    "generated_header": "airflow_provider_worktree.core.files.skips",
    "git_bytes": "airflow_provider_worktree.core.files.listing",
    "is_source": "airflow_provider_worktree.core.files.skips",
    "line_ranges": "airflow_provider_worktree.core.files.ranges",
    "match_any": "airflow_provider_worktree.core.files.globs",
    "match_glob": "airflow_provider_worktree.core.files.globs",
    "materialize": "airflow_provider_worktree.core.files.listing",
    "name_problem": "airflow_provider_worktree.core.files.listing",
    "normalise_globs": "airflow_provider_worktree.core.files.globs",
    "optional_globs": "airflow_provider_worktree.core.files.globs",
    "parse_python": "airflow_provider_worktree.core.files.ranges",
    "read_blob_chunks": "airflow_provider_worktree.core.files.listing",
    "read_blobs": "airflow_provider_worktree.core.files.listing",
    "resolve_commit": "airflow_provider_worktree.core.files.listing",
    "scratch_dir": "airflow_provider_worktree.core.files.listing",
    "selected_by": "airflow_provider_worktree.core.files.globs",
    "skip_reason": "airflow_provider_worktree.core.files.skips",
    "tree_listing": "airflow_provider_worktree.core.files.listing",
})
