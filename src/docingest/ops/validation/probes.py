"""The security probes of `docingest validate` (DESIGN.md §4, §5, §8; issue 4): attacks on a
running stack over HTTP, each judged by the status code it must get AND by nothing having
changed, with a genuine request right after as the control (so a refusal proves the defect
was refused, not that the route is broken).

* callbacks: forged, stale, altered, replayed, rotated-key, mismatched and hash-mismatched
  signed callbacks, and hint callbacks without or with a wrong token, each against a job of
  its own waiting in `parse_queued`. The fake parser holds those jobs PENDING (its
  `parse_delay_ms` fault, set for their uploads only), so no callback of its own and no
  reconciler poll can move them; the probes finish them with genuine signed callbacks.
  The stack's callback timeout must exceed the few seconds the refusals take.
* cross-user: another user's token answers 404 on every route that names A's document or
  job, and neither listing nor search (over identical text of B's own) shows A's rows.
* tokens: bad signature, expired, `alg: none`, another algorithm, no `exp`, none, malformed.
* inputs: not a PDF, empty, oversized (declared and streamed), every hostile corpus file
  whose MANIFEST row says it must fail, and a valid PDF beside them that must complete.

Probes run one after another on an otherwise idle stack. A probe's `detail` holds status
codes, counts and reasons only: never document text, file names or tokens.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from docingest.domain import webhook_auth
from docingest.ops.validation.corpus_manifest import must_fail, read_manifest
from docingest.ops.validation.probe_access import (
    cross_pair,
    cross_user_probes,
    token_probes,
)
from docingest.ops.validation.probe_callbacks import (
    probe_altered,
    probe_artifact_hash,
    probe_forged,
    probe_hint,
    probe_mismatched,
    probe_replayed,
    probe_rotated_key,
    probe_stale,
    waiting_jobs,
)
from docingest.ops.validation.probe_inputs import (
    hostile_check,
    hostile_run,
    probe_isolation,
    probe_oversized_declared,
    probe_oversized_streamed,
    probe_refused_upload,
)
from docingest.ops.validation.probe_kit import (
    Context,
    Lazy,
    ProbeResult,
    ProbeTarget,
    Upload,
    run_one,
)


def run_probes(target: ProbeTarget, *, terminal_timeout_s: float = 180.0) -> list[ProbeResult]:
    with httpx.Client(base_url=target.api_url, timeout=60) as http:
        ctx = Context(target, http, terminal_timeout_s)
        return [run_one(name, probe, ctx) for name, probe in probe_plan(ctx)]


def probe_plan(ctx: Context) -> list[tuple[str, Callable[[Context], str]]]:
    held = Lazy(lambda: waiting_jobs(ctx, 10))
    pair = Lazy(lambda: cross_pair(ctx))
    hostile = Lazy(lambda: hostile_run(ctx))

    def job(i: int) -> Upload:
        ups: list[Upload] = held()
        return ups[i]

    plan: list[tuple[str, Callable[[Context], str]]] = [
        ("callback.forged", lambda c: probe_forged(c, job(0))),
        ("callback.stale", lambda c: probe_stale(c, job(1))),
        ("callback.altered_body", lambda c: probe_altered(c, job(2))),
        ("callback.replayed", lambda c: probe_replayed(c, job(3))),
        ("callback.rotated_key", lambda c: probe_rotated_key(c, job(4))),
        ("callback.mismatched_ids", lambda c: probe_mismatched(c, job(5), job(6))),
        ("callback.artifact_mismatch", lambda c: probe_artifact_hash(c, job(7))),
        ("hint.missing_token", lambda c: probe_hint(c, job(8), {"none": None, "empty": ""})),
        (
            "hint.wrong_token",
            lambda c: probe_hint(
                c,
                job(9),
                {
                    "other_job": webhook_auth.callback_token(
                        c.target.webhook_secret, uuid.UUID(job(0).job_id)
                    ),
                    "random": base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).decode(),
                },
            ),
        ),
    ]
    plan += cross_user_probes(pair)
    plan += token_probes(ctx)
    plan += [
        (
            "input.not_pdf",
            lambda c: probe_refused_upload(c, b"plain text, no PDF header\n" * 64, 415, "not_pdf"),
        ),
        ("input.empty", lambda c: probe_refused_upload(c, b"", 415, "empty_file")),
        ("input.oversized_declared", probe_oversized_declared),
        ("input.oversized_streamed", probe_oversized_streamed),
    ]
    for f in read_manifest(ctx.target.corpus_dir):
        if f.name.startswith("hostile/") and must_fail(f.expect):
            plan.append((f"input.{Path(f.name).stem}", hostile_check(hostile, f.name)))
    plan.append(("input.hostile_isolation", lambda c: probe_isolation(c, hostile())))
    return plan
