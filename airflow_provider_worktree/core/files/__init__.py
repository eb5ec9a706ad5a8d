"""A repository's files at a commit, read without a checkout: the listing, blobs, globs, the default skip
rules (vendored, generated, fixtures, ``.gitattributes``) and line ranges of large files.

May import: ``core.errors``, ``core.git`` and ``core.sandbox``. Plain Python, no Airflow.

The names below are importable from the package (resolved on first use); modules import each other's
names from the defining module.
"""

from __future__ import annotations

from airflow_provider_worktree._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "GitAttributes": "airflow_provider_worktree.core.files.listing",
    "Listing": "airflow_provider_worktree.core.files.listing",
    "R_ATTR_GENERATED": "airflow_provider_worktree.core.files.listing",
    "R_ATTR_VENDORED": "airflow_provider_worktree.core.files.listing",
    "R_CI": "airflow_provider_worktree.core.files.listing",
    "R_EDITOR_LIMIT": "airflow_provider_worktree.core.files.listing",
    "R_EXCLUDED": "airflow_provider_worktree.core.files.listing",
    "R_FIXTURE": "airflow_provider_worktree.core.files.listing",
    "R_GENERATED": "airflow_provider_worktree.core.files.listing",
    "R_NAME": "airflow_provider_worktree.core.files.listing",
    "R_NOT_SOURCE": "airflow_provider_worktree.core.files.listing",
    "R_SYMLINK": "airflow_provider_worktree.core.files.listing",
    "R_TOO_LARGE": "airflow_provider_worktree.core.files.listing",
    "R_VENDORED": "airflow_provider_worktree.core.files.listing",
    "SOURCE_SUFFIXES": "airflow_provider_worktree.core.files.listing",
    "decode_text": "airflow_provider_worktree.core.files.listing",
    "generated_header": "airflow_provider_worktree.core.files.listing",
    "git_bytes": "airflow_provider_worktree.core.files.listing",
    "is_source": "airflow_provider_worktree.core.files.listing",
    "line_ranges": "airflow_provider_worktree.core.files.listing",
    "match_glob": "airflow_provider_worktree.core.files.listing",
    "materialize": "airflow_provider_worktree.core.files.listing",
    "name_problem": "airflow_provider_worktree.core.files.listing",
    "read_blob_chunks": "airflow_provider_worktree.core.files.listing",
    "read_blobs": "airflow_provider_worktree.core.files.listing",
    "scratch_dir": "airflow_provider_worktree.core.files.listing",
    "skip_reason": "airflow_provider_worktree.core.files.listing",
    "tree_listing": "airflow_provider_worktree.core.files.listing",
})
