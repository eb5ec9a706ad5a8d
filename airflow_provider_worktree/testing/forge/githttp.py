"""Git over smart HTTP for the offline forges: ``git http-backend`` (git's own CGI program) behind the double's
HTTP server, so branches are fetched from and pushed to it exactly as to a real forge (TEST DOUBLE).

Fetching is anonymous; pushing (``git-receive-pack``) needs HTTP Basic credentials whose password is the forge's
token (a personal access token as password, as GitHub and GitLab take it).
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


def basic_password(headers: Mapping[str, str]) -> str | None:
    """The password of an ``Authorization: Basic`` header, or None."""
    value = headers.get("Authorization") or headers.get("authorization") or ""
    if not value.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(value.split(None, 1)[1]).decode("utf-8", "replace")
    except (ValueError, IndexError):
        return None
    return decoded.split(":", 1)[1] if ":" in decoded else None


def is_push(path: str, query: str) -> bool:
    return path.endswith("/git-receive-pack") or "service=git-receive-pack" in query


def serve(root: Path, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
          ) -> tuple[int, dict[str, str], bytes]:
    """Run ``git http-backend`` for one request under ``root`` (bare repositories ``owner/name.git``)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1",
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_USER": "offline",
        "REMOTE_ADDR": "127.0.0.1", "CONTENT_TYPE": headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)), "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root),
    }
    if headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = headers["Content-Encoding"]
    if headers.get("Git-Protocol"):
        env["GIT_PROTOCOL"] = headers["Git-Protocol"]
    done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120)
    raw = done.stdout
    head, _, payload = raw.partition(b"\r\n\r\n")
    if not _:
        head, _, payload = raw.partition(b"\n\n")
    status, out = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            out[name.strip()] = value.strip()
    return status, out, payload


def init_bare(root: Path, owner: str, name: str, source: str | os.PathLike[str] | None, default_branch: str) -> Path:
    """A bare repository ``root/owner/name.git`` (a mirror of ``source`` when given), pushable over HTTP."""
    bare = root / owner / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        subprocess.run(["git", "clone", "--quiet", "--bare", os.fspath(source), str(bare)], check=True,
                       capture_output=True)
    else:
        subprocess.run(["git", "init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(bare)],
                       check=True, capture_output=True)
    subprocess.run(["git", "-C", str(bare), "config", "http.receivepack", "true"], check=True)
    subprocess.run(["git", "-C", str(bare), "symbolic-ref", "HEAD", f"refs/heads/{default_branch}"], check=True)
    return bare


def branch_sha(bare: Path, branch: str) -> str | None:
    done = subprocess.run(["git", "-C", str(bare), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                          capture_output=True, text=True)
    return done.stdout.strip() or None


def commits_between(bare: Path, base: str, head: str) -> tuple[int, int, int, int]:
    """(commits, files changed, additions, deletions) of ``base...head``."""
    count = subprocess.run(["git", "-C", str(bare), "rev-list", "--count", f"{base}..{head}"],
                           capture_output=True, text=True).stdout.strip()
    stat = subprocess.run(["git", "-C", str(bare), "diff", "--numstat", f"{base}...{head}"],
                          capture_output=True, text=True).stdout.splitlines()
    adds = dels = 0
    for line in stat:
        a, d, *_ = line.split("\t")
        adds += int(a) if a.isdigit() else 0
        dels += int(d) if d.isdigit() else 0
    return int(count or 0), len(stat), adds, dels


def commit_info(bare: Path, ref: str) -> dict[str, object] | None:
    """A commit's fields for the REST commit object, or None when ``ref`` names none."""
    fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
    done = subprocess.run(["git", "-C", str(bare), "log", "-1", f"--format={fmt}", ref, "--"], capture_output=True,
                          text=True)
    if done.returncode != 0 or not done.stdout:
        return None
    sha, tree, parents, an, ae, ad, cn, ce, cd, message = done.stdout.split("\x00", 9)
    return {"sha": sha, "tree": tree, "parents": parents.split(), "author_name": an, "author_email": ae,
            "author_date": ad, "committer_name": cn, "committer_email": ce, "committer_date": cd,
            "message": message.rstrip("\n")}
