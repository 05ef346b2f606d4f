"""The deployment files (Dockerfile, deploy/k8s, render.yaml, deploy/systemd) agree with the
program: every `docingest` command line they run parses in the real CLI, every DOCINGEST_*
variable they set is one the program reads, and the safety properties hold (non-root,
secrets from Secrets, stop grace above the job lease, HPA on the real worker Deployment)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.core
import typer.main
import yaml

from docingest.api import queue_metrics
from docingest.cli import app
from docingest.config import Settings
from docingest.config.environment import Environment
from docingest.domain.states import JobStatus
from docingest.ops.validation.drill import K8S_CRONJOB, SYSTEMD_TIMER, schedule_minutes
from docingest.store.queue_stats import QueueSnapshot
from tests.conftest import REPO

K8S = REPO / "deploy" / "k8s"
SYSTEMD = REPO / "deploy" / "systemd"
DOCKERFILE = REPO / "Dockerfile"
RENDER = REPO / "render.yaml"
SECRETS = {
    "DOCINGEST_DATABASE_URL",
    "DOCINGEST_JWT_SECRET",
    "DOCINGEST_WEBHOOK_SECRET",
    "DOCINGEST_MASTER_KEY",
    "DOCINGEST_OPENAI_API_KEY",
    "DOCINGEST_LLAMAPARSE_API_KEY",
}
VAR = re.compile(r"\bDOCINGEST_[A-Z0-9_]+\b")


def _config_variables() -> set[str]:
    """Every variable the settings model reads (config/environment.py)."""
    return set(Environment.variables())


def _cli() -> typer.core.TyperGroup:
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    return command


def _cli_envvars(command: Any) -> set[str]:
    found = {str(p.envvar) for p in command.params if isinstance(p.envvar, str)}
    if isinstance(command, typer.core.TyperGroup):
        for sub in command.commands.values():
            found |= _cli_envvars(sub)
    return found


def _parses(argv: list[str]) -> None:
    """Resolve subcommands and parse the options exactly as `docingest ARGV` would, without
    running anything; click raises a UsageError (a TyperException) on an unknown command,
    option or bad value."""
    command: Any = _cli()
    args = list(argv)
    while isinstance(command, typer.core.TyperGroup):
        assert args, f"{argv}: no subcommand"
        name = args.pop(0)
        assert name in command.commands, f"{argv}: no command {name!r}"
        command = command.commands[name]
    command.make_context(command.name or "docingest", args)


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in _yaml_docs(path)]


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in _k8s_docs():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        if doc["kind"] == "CronJob":
            yield doc["metadata"]["name"], doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in _pod_specs():
        for container in spec["containers"]:
            yield name, container


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _k8s_docs() if doc["kind"] == kind]


def _dockerfile_final_stage() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return [line for line in lines[last_from:] if not line.startswith("#")]


def _instruction(stage: list[str], keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in stage if line.upper().startswith(keyword + " ")]


def _unit(path: Path) -> dict[str, list[str]]:
    """A systemd unit's keys (repeated keys keep every value)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _render_services() -> list[dict[str, Any]]:
    services: list[dict[str, Any]] = _yaml_docs(RENDER)[0]["services"]
    return services


def _command_lines() -> list[tuple[str, list[str]]]:
    """Every `docingest` argv the deployment files run, with where it comes from."""
    found: list[tuple[str, list[str]]] = []
    entrypoint = _instruction(_dockerfile_final_stage(), "ENTRYPOINT")
    assert entrypoint == ['["docingest"]']
    cmd = yaml.safe_load(_instruction(_dockerfile_final_stage(), "CMD")[0])
    found.append(("Dockerfile CMD", cmd))
    for name, container in _containers():
        assert "command" not in container, f"{name}: keep the image's ENTRYPOINT"
        found.append((f"k8s {name}", container["args"]))
    for service in _render_services():
        for key in ("dockerCommand", "preDeployCommand"):
            if key in service:
                argv = shlex.split(service[key])
                assert argv[0] == "docingest", service[key]
                found.append((f"render {service['name']} {key}", argv[1:]))
    for path in sorted(SYSTEMD.glob("*.service")):
        for line in _unit(path)["ExecStart"]:
            argv = shlex.split(line.replace("%i", "1"))
            assert argv[0] == "/opt/docingest/bin/docingest", line
            found.append((path.name, argv[1:]))
    return found


def _variables_named() -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    paths = [DOCKERFILE, RENDER, *K8S.glob("*.yaml"), *SYSTEMD.glob("*")]
    for path in paths:
        named[str(path.relative_to(REPO))] = set(VAR.findall(path.read_text(encoding="utf-8")))
    return named


def _design_section_7() -> str:
    text = (REPO.parent / "shared" / "DESIGN.md").read_text(encoding="utf-8")
    return text.split("## 7.", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("path", [RENDER, *sorted(K8S.glob("*.yaml"))], ids=lambda p: p.name)
def test_every_yaml_file_parses(path: Path) -> None:
    assert _yaml_docs(path)


def test_every_command_line_parses_in_the_real_cli() -> None:
    lines = _command_lines()
    assert {tuple(argv[:1]) for _, argv in lines} >= {("api",), ("worker",), ("db",)}
    for where, argv in lines:
        try:
            _parses(argv)
        except typer.TyperException as exc:
            pytest.fail(f"{where}: `docingest {shlex.join(argv)}`: {exc.format_message()}")


def test_a_bad_command_line_is_caught() -> None:
    """The check above can fail: an unknown flag or a bad value is refused."""
    with pytest.raises(typer.TyperException):
        _parses(["worker", "--no-such-flag"])
    with pytest.raises(typer.TyperException):
        _parses(["worker", "--metrics-port", "70000"])


def test_api_and_workers_never_migrate_and_only_the_migrate_step_does() -> None:
    for where, argv in _command_lines():
        if argv[0] in ("api", "worker"):
            assert "--no-migrate" in argv, where


def test_every_variable_named_is_read_by_the_program() -> None:
    known = _config_variables() | _cli_envvars(_cli())
    for where, names in _variables_named().items():
        assert names <= known, f"{where} names unknown variables {sorted(names - known)}"


def test_config_reads_every_variable_of_design_section_7() -> None:
    design = set(VAR.findall(_design_section_7())) | {"OPENAI_API_KEY"}
    assert len(design) > 15
    assert design <= _config_variables(), sorted(design - _config_variables())


def test_secrets_come_from_secret_refs_never_the_config_map() -> None:
    (config_map,) = _by_kind("ConfigMap")
    assert not set(config_map["data"]) & SECRETS
    for name, container in _containers():
        env = {e["name"]: e for e in container.get("env", [])}
        assert "DOCINGEST_DATABASE_URL" in env, name
        for var in SECRETS & set(env):
            assert "secretKeyRef" in env[var]["valueFrom"], f"{name}: {var}"
    example = _yaml_docs(K8S / "secret.example.yaml")[0]["stringData"]
    assert all("CHANGE_ME" in value for value in example.values())
    for service in _render_services():
        for var in service["envVars"]:
            if var.get("key") in SECRETS:
                assert var == {"key": var["key"], "sync": False}, service["name"]


def _lease_seconds() -> int:
    (config_map,) = _by_kind("ConfigMap")
    lease = int(config_map["data"]["DOCINGEST_LEASE_SECONDS"])
    assert lease >= Settings.from_env({}).lease_seconds
    return lease


def test_workers_get_more_time_to_stop_than_a_lease() -> None:
    lease = _lease_seconds()
    (worker,) = [
        d
        for d in _by_kind("Deployment")
        if "worker" in d["spec"]["template"]["spec"]["containers"][0]["args"]
    ]
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > lease
    unit = _unit(SYSTEMD / "docingest-worker@.service")
    env = _unit(SYSTEMD / "docingest.env.example")
    assert int(unit["TimeoutStopSec"][0]) > int(env["DOCINGEST_LEASE_SECONDS"][0])
    assert int(env["DOCINGEST_LEASE_SECONDS"][0]) == lease


def test_containers_run_as_non_root_with_no_privilege_escalation() -> None:
    for name, spec in _pod_specs():
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0, name
    for name, container in _containers():
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False, name
        assert ctx["readOnlyRootFilesystem"] is True, name
        assert ctx["capabilities"]["drop"] == ["ALL"], name


def test_probes_hit_the_real_health_routes() -> None:
    for name, container in _containers():
        if container["args"][0] == "api":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name


def test_hpa_scales_the_worker_deployment_on_the_queue_depth_the_api_exports() -> None:
    (hpa,) = _by_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    workers = {
        d["metadata"]["name"]
        for d in _by_kind("Deployment")
        if d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "worker"
    }
    assert target["kind"] == "Deployment" and {target["name"]} == workers
    (metric,) = hpa["spec"]["metrics"]
    name = metric["external"]["metric"]["name"]
    snap = QueueSnapshot(
        dict.fromkeys(JobStatus, 0), depth=3, oldest_claimable_s=0, live_workers=0, in_flight=0
    )
    assert f"\n{name} 3.0\n" in queue_metrics.render(snap).decode()
    adapter = _yaml_docs(REPO / "deploy" / "prometheus" / "adapter-values.yaml")[0]
    assert [r["name"]["as"] for r in adapter["rules"]["external"]] == [name]
    pdbs = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for d in _by_kind("PodDisruptionBudget")
    }
    assert pdbs == {"api", "worker"}


def test_image_final_stage_has_no_build_tools_and_a_non_root_user() -> None:
    stage = _dockerfile_final_stage()
    assert stage[0].startswith("FROM python:3.11-slim")
    body = "\n".join(stage).lower()
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "make "):
        assert tool not in body, tool
    (user,) = _instruction(stage, "USER")
    assert user.split(":")[0] not in ("root", "0")
    copies = _instruction(stage, "COPY")
    assert copies == ["--from=builder /opt/docingest /opt/docingest"]
    assert any("/healthz" in line for line in _instruction(stage, "HEALTHCHECK"))


@pytest.mark.parametrize("path", sorted(SYSTEMD.glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_are_hardened(path: Path) -> None:
    unit = _unit(path)
    assert unit["User"] == ["docingest"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["PrivateTmp"] == ["yes"]
    env_files = unit["EnvironmentFile"]
    assert "/etc/docingest/docingest.env" in env_files
    assert len([f for f in env_files if f.startswith("/etc/docingest/db-")]) == 1


def test_backups_are_scheduled_at_one_interval_on_systemd_and_kubernetes() -> None:
    """The RPO in the validation report comes from this interval (ops/validation/drill.py)."""
    schedule = schedule_minutes(REPO)
    assert set(schedule) == {SYSTEMD_TIMER, K8S_CRONJOB}
    [every] = set(schedule.values())
    assert isinstance(every, int) and 0 < every <= 60
    timer = _unit(REPO / SYSTEMD_TIMER)
    assert timer["Unit"] == ["docingest-backup.service"] and timer["Persistent"] == ["true"]
    (cron,) = _by_kind("CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"  # never two backups at once
    [line] = _unit(SYSTEMD / "docingest-backup.service")["ExecStart"]
    [container] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    for argv in (line.split()[1:], container["args"]):  # one command, each to its own volume
        assert argv[:2] == ["backup", "create"] and argv[3:] == ["--timestamped", "--database-only"]
