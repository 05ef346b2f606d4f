"""deploy/grafana/docingest.json: valid JSON for Grafana import, every query names only metrics
the code registers, and no query selects or groups by an id or a name."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, Metric

import docingest.api.main  # registers the API metrics
import docingest.worker.metrics  # noqa: F401  (registers the worker metrics)
from docingest.api.queue_metrics import QueueCollector
from docingest.domain.states import JobStatus
from docingest.store.queue_stats import QueueSnapshot

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "docingest.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}
# labels no query may use: they would identify a person or a document
FORBIDDEN_LABELS = {
    "user",
    "user_id",
    "sub",
    "document",
    "document_id",
    "job_id",
    "correlation_id",
    "filename",
    "file",
    "name",
    "path",
    "query",
}
METRIC = re.compile(r"\bdocingest_[a-z0-9_]+\b")
MATCHERS = re.compile(r"\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exposed_names(families: list[Metric]) -> set[str]:
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def registered_names() -> set[str]:
    queue = QueueSnapshot(
        by_status=dict.fromkeys(JobStatus, 0),
        depth=0,
        oldest_claimable_s=0,
        live_workers=0,
        in_flight=0,
    )
    return exposed_names(list(REGISTRY.collect())) | exposed_names(
        list(QueueCollector(queue).collect())
    )


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, rows' nested panels included."""
    out = []
    for panel in dashboard["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            out += [(p["title"], t["expr"]) for t in p.get("targets", [])]
    return out


def labels_in(expr: str) -> set[str]:
    """Label names in matchers (`{a="x", b=~"y"}`) and in `by (...)`/`without (...)`."""
    without_templates = re.sub(r"\$__\w+|\[[^\]]*\]", "", expr)
    found = set()
    for body in MATCHERS.findall(without_templates):
        found |= {m.group(1) for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", body)}
    for body in GROUPING.findall(without_templates):
        found |= {x.strip() for x in body.split(",") if x.strip()}
    return found


def test_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_every_query_uses_registered_metrics_and_no_identifying_labels() -> None:
    known = registered_names()
    found = queries(json.loads(DASHBOARD.read_text()))
    assert len(found) >= 15
    used: set[str] = set()
    for title, expr in found:
        names = set(METRIC.findall(expr))
        assert names, f"{title}: no docingest metric in {expr}"
        assert names <= known, f"{title}: not registered: {sorted(names - known)}"
        bad = labels_in(expr) & FORBIDDEN_LABELS
        assert not bad, f"{title}: identifying labels {sorted(bad)}"
        used |= names
    # the panels the runbook promises (issue 6)
    for required in (
        "docingest_jobs",
        "docingest_queue_depth",
        "docingest_queue_oldest_claimable_age_seconds",
        "docingest_worker_jobs_finished_total",
        "docingest_worker_jobs_failed_total",
        "docingest_worker_stage_seconds_bucket",
        "docingest_external_call_seconds_bucket",
        "docingest_external_call_seconds_count",
        "docingest_circuit_state",
        "docingest_worker_retries_total",
        "docingest_embedding_tokens_total",
        "docingest_embedding_cost_usd_total",
        "docingest_webhook_rejections_total",
        "docingest_workers_with_live_lease",
    ):
        assert required in used, f"no panel uses {required}"


def test_the_checks_catch_an_unknown_metric_and_an_id_label() -> None:
    known = registered_names()
    assert "docingest_worker_jobs_finished_total" in known
    assert "docingest_worker_jobs_finished" not in known  # a counter is exposed as _total
    assert "docingest_worker_stage_seconds" not in known  # a histogram only by its series
    assert labels_in('sum by (document_id) (rate(x{user_id="u", code!="y"}[5m]))') == {
        "document_id",
        "user_id",
        "code",
    }
