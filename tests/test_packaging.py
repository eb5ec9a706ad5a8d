"""The package as a user gets it: build the sdist and wheel, install the wheel into a fresh virtual environment
with Airflow, and use it there (``airflow providers list``, ``airflow-worktree example-dags``, ``airflow dags
list``). The sdist must carry what the tests need to run from it.

Slow (a build and a fresh install, about two minutes with a warm pip cache): marker ``integration``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
NAME = "airflow_provider_worktree"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 1200), **kw)
    assert out.returncode == 0, (cmd, out.stdout[-3000:], out.stderr[-5000:])
    return out


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=ROOT)
    return out


def _one(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def test_sdist_carries_tests_docs_changelog_licence_and_example_dags(dist: Path, tmp_path: Path):
    sdist = _one(dist, "*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path, filter="data")
    for needed in ("tests/conftest.py", "tests/realrepos.py", "tests/test_cli.py", "docs/cli.md",
                   "docs/runbook.md", "CHANGELOG.md", "LICENSE", "README.md", "scripts/smoke_run.sh",
                   f"{NAME}/example_dags/parallel_maintenance_poc.py", f"{NAME}/example_dags/worktree_health.py"):
        assert needed in names, needed
    assert not any(n.endswith((".pyc", ".db")) or "/.venv/" in n for n in names)
    licence = (tmp_path / sdist.name[: -len(".tar.gz")] / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the full text, not a pointer to it
    # The tests run from the unpacked sdist: every module imports and is collected.
    unpacked = tmp_path / sdist.name[: -len(".tar.gz")]
    out = _run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
               cwd=unpacked)
    assert "error" not in out.stdout.lower().split("\n")[-2], out.stdout[-2000:]
    assert " tests collected" in out.stdout or "tests collected" in out.stdout


def test_wheel_carries_licence_example_dags_and_tested_minimum_versions(dist: Path):
    wheel = _one(dist, "*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(meta_name).decode()
    assert f"{NAME}/example_dags/parallel_maintenance_poc.py" in names
    assert f"{NAME}/example_dags/worktree_health.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in metadata and "Project-URL:" in metadata
    assert "Classifier: Framework :: Apache Airflow :: Provider" in metadata
    requires = [line.split(": ", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist: ")
                and "extra ==" not in line]
    for name in ("apache-airflow", "apache-airflow-providers-common-sql", "apache-airflow-providers-anthropic",
                 "anthropic"):
        (spec,) = [r for r in requires if r.split(">")[0].split("<")[0].strip() == name]
        assert ">=" in spec, spec


@pytest.mark.timeout(2400)
def test_wheel_installs_into_a_fresh_venv_and_works_there(dist: Path, tmp_path: Path):
    assert _one(dist, "*.whl").name.startswith(NAME)
    env_dir = tmp_path / "fresh-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '')}", PIP_DISABLE_PIP_VERSION_CHECK="1",
               AIRFLOW_HOME=str(tmp_path / "airflow-home"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               PYTHONWARNINGS="ignore")
    # Pinned to the versions this suite runs against (its own venv), so pip resolves without backtracking
    # and takes the wheels from its cache.
    frozen = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"]).stdout
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("".join(line + "\n" for line in frozen.splitlines()
                                   if line and not line.startswith(("-e ", "airflow-provider-worktree"))))
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--prefer-binary", "-c", str(constraints),
          "--find-links", str(dist), "airflow-provider-worktree"], env=env, cwd=tmp_path, timeout=2000)
    # the installed package is the wheel's, not this checkout
    where = _run([str(bin_dir / "python"), "-c", f"import {NAME}; print({NAME}.__file__)"], env=env,
                 cwd=tmp_path).stdout
    assert str(env_dir) in where and str(ROOT) not in where

    providers = _run([str(bin_dir / "airflow"), "providers", "list", "-o", "json"], env=env, cwd=tmp_path).stdout
    listed = {p["package_name"]: p for p in json.loads(providers[providers.index("["):])}
    assert "airflow-provider-worktree" in listed, sorted(listed)

    dags = tmp_path / "dags"
    placed = _run([str(bin_dir / "airflow-worktree"), "example-dags", str(dags)], env=env, cwd=tmp_path)
    assert sorted(p.name for p in dags.glob("*.py")) == ["campaign_maintenance.py", "parallel_maintenance_poc.py",
                                                         "worktree_health.py"]
    assert "Copied 3 example DAG(s)" in placed.stdout

    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    _run([str(bin_dir / "airflow"), "db", "migrate"], env=env, cwd=tmp_path)
    # --local: parse the dags folder now (without it, Airflow 3 lists what its DAG processor stored)
    listed_dags = _run([str(bin_dir / "airflow"), "dags", "list", "--local", "-o", "json"], env=env,
                       cwd=tmp_path).stdout
    ids = {d["dag_id"] for d in json.loads(listed_dags[listed_dags.index("["):])}
    assert {"parallel_maintenance_poc", "worktree_health", "campaign_maintenance"} <= ids
    errors = _run([str(bin_dir / "airflow"), "dags", "list-import-errors", "--local", "-o", "json"], env=env,
                  cwd=tmp_path).stdout
    assert "parallel_maintenance_poc" not in errors and "worktree_health" not in errors
    # the provider's CLI entry works from the wheel install too
    status = subprocess.run([str(bin_dir / "airflow"), "worktree", "thresholds", "--json"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=300)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "stale_locks" in status.stdout
