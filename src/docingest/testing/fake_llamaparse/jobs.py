"""One uploaded job's life: parse (or fail as injected) while the configured parse delay
runs, then hand the outcome to the callback sender.

The delay is the job's whole time, as a real parser's latency includes its own parsing: the
parse runs during the delay, not after it (after it, the fake's CPU queue on the cores it
shares with the stack would add an unconfigured second or so to every job of a burst)."""

from __future__ import annotations

import asyncio
import time

from docingest.testing.fake_ledgers import jittered_s
from docingest.testing.fake_llamaparse.callbacks import delivery_for, dispatch
from docingest.testing.fake_llamaparse.state import FakeJob, FakeState


async def run_job(state: FakeState, job: FakeJob, data: bytes, fail: bool, lose: bool) -> None:
    parsing = None if fail else asyncio.ensure_future(state.parser.parse(data))
    await asyncio.sleep(jittered_s(state.faults.parse_delay_ms, state.faults.parse_delay_jitter_ms))
    if parsing is None:
        job.status, job.error_code = state.faults.fail_status, state.faults.fail_error_code
        job.error_message = "injected failure"
    else:
        answer = await parsing
        if answer["ok"]:
            job.status, job.markdown = "SUCCESS", answer["markdown"]
        else:
            job.status, job.error_code = "ERROR", str(answer["code"]).upper()
            job.error_message = "the document could not be parsed"
    job.seconds = time.monotonic() - job.received
    job.lost = lose
    delivery = delivery_for(state, job)
    if delivery is not None:
        await dispatch(state, delivery)
