"""The operators' grouped settings (``budget``, ``runner_options``): templated by real Airflow, checked once
rendered, and the flat keywords they replace still accepted (with a DeprecationWarning) by the constructor and by
``partial``. Running a shard with them: tests/test_operator.py."""

from __future__ import annotations

import pendulum
import pytest
from airflow.sdk import DAG, Param

from airflow_provider_worktree.core.errors import ConfigurationError
from airflow_provider_worktree.operators.batch import ClaudeBatchSubmitOperator
from airflow_provider_worktree.operators.maintenance import ClaudeMaintenanceOperator
from airflow_provider_worktree.operators.options import BUDGET_DEFAULTS, RUNNER_DEFAULTS

SHARD = {"shard_id": "todo-0123456789", "task": "todo", "files": ["a.py"]}


def _dag(native: bool, **params) -> DAG:
    return DAG("options", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
               render_template_as_native_obj=native, params={k: Param(v) for k, v in params.items()})


@pytest.mark.parametrize("native", [True, False], ids=["native", "text"])
def test_grouped_settings_are_templated_and_read_once_rendered(native):
    params = {"turns": 7, "cap": None, "model": "claude-haiku-4-5", "limit": 3, "beat": 2}
    with _dag(native, **params):
        op = ClaudeMaintenanceOperator(
            task_id="maintain", shard=SHARD, shard_status_conn_id=None, max_active_shards="{{ params.limit }}",
            budget={"max_turns": "{{ params.turns }}", "max_cost_usd": "{{ params.cap }}", "prices": {
                "claude-haiku": {"input": 1, "output": 5}}},
            runner_options={"model": "{{ params.model }}", "heartbeat_interval": "{{ params.beat }}"})
    assert {"budget", "runner_options", "max_active_shards"} <= set(op.template_fields)
    op.render_template_fields({"params": params})
    op._check_rendered()
    assert op.budget == {**BUDGET_DEFAULTS, "max_turns": 7, "prices": {"claude-haiku": {"input": 1, "output": 5}}}
    assert op.runner_options == {**RUNNER_DEFAULTS, "model": "claude-haiku-4-5", "heartbeat_interval": 2.0,
                                 "rate_limit": {}}, "rate_limit 'shared' reads as the default mapping"
    assert op.max_active_shards == 3


def test_a_whole_mapping_may_come_from_one_param():
    budget = {"max_turns": 5, "max_output_tokens": 1000}
    with _dag(True, budget=budget):
        op = ClaudeMaintenanceOperator(task_id="maintain", shard=SHARD, shard_status_conn_id=None,
                                       budget="{{ params.budget }}")
    op.render_template_fields({"params": {"budget": budget}})
    op._check_rendered()
    assert op.budget == {**BUDGET_DEFAULTS, **budget}


def test_bad_groups_are_clear_errors():
    with pytest.raises(ConfigurationError, match=r"budget has unknown keys \['max_tokns'\]: it takes max_turns"):
        ClaudeMaintenanceOperator(task_id="m", shard=SHARD, budget={"max_tokns": 10})
    with pytest.raises(ConfigurationError, match="runner_options must be a mapping"):
        ClaudeMaintenanceOperator(task_id="m", shard=SHARD, runner_options=["claude-sonnet-4-6"])
    with pytest.raises(ConfigurationError, match="max_turns given twice, in budget and as the deprecated keyword"):
        ClaudeMaintenanceOperator(task_id="m", shard=SHARD, budget={"max_turns": 5}, max_turns=6)
    with pytest.raises(ConfigurationError, match="beside a templated budget"):
        ClaudeMaintenanceOperator(task_id="m", shard=SHARD, budget="{{ params.budget }}", max_turns=6)
    with pytest.raises(ConfigurationError, match="heartbeat_interval must be > 0"):
        ClaudeMaintenanceOperator(task_id="m", shard=SHARD, runner_options={"heartbeat_interval": 0})
    op = ClaudeMaintenanceOperator(task_id="m", shard=SHARD, budget={"max_turns": "many"})
    with pytest.raises(ConfigurationError, match="max_turns must be a positive integer, got 'many'"):
        op._check_rendered()


def test_flat_keywords_pass_partial_and_warn_when_the_task_is_built():
    with _dag(True):
        mapped = ClaudeMaintenanceOperator.partial(task_id="maintain", max_turns=5, model="m",
                                                   shard_status_conn_id=None).expand(shard=[SHARD])
    assert mapped.partial_kwargs["max_turns"] == 5
    with pytest.warns(DeprecationWarning, match=r"max_turns=\.\.\.\) is deprecated"):
        op = ClaudeMaintenanceOperator(task_id="maintain", shard=SHARD, max_turns=5, model="m")
    assert op.budget["max_turns"] == 5 and op.runner_options["model"] == "m"


def test_batch_submit_takes_the_same_budget_and_warns_on_flat_keywords():
    budget = {"max_turns": 20, "max_input_tokens": 1000, "max_cost_usd": 0.5}
    grouped = ClaudeBatchSubmitOperator(task_id="submit", shards=[SHARD], budget=budget)
    with pytest.warns(DeprecationWarning, match=r"ClaudeBatchSubmitOperator\(max_cost_usd=\.\.\.\) is deprecated"):
        flat = ClaudeBatchSubmitOperator(task_id="submit", shards=[SHARD], max_input_tokens=1000, max_cost_usd=0.5)
    assert flat.budget == grouped.budget and grouped.budget["max_tokens"] == 8192
    assert "budget" in ClaudeBatchSubmitOperator.template_fields
