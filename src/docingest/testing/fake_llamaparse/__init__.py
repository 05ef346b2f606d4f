"""A fake LlamaParse v1 server for tests, benchmarks and offline trials.

Run it as a process::

    python -m docingest.testing.fake_llamaparse --host 127.0.0.1 --port 8091 \\
        [--mode callback|relay|none] [--webhook-secret S] [--api-key KEY]

What it reproduces of the real contract (CONTRACTS.md §1):

* `POST /api/parsing/upload` (alias `/api/v1/parsing/upload`): multipart `file` + form
  fields -> `{"id", "status": "PENDING"}`; `GET /api/parsing/job/{id}` ->
  `{id, status, error_code, error_message}`; `GET .../result/{markdown|text|json}`;
  404 `{"detail": "Job not found"}` for unknown jobs; Bearer auth when `--api-key` is set.
* It really parses the PDF with docingest's own conversion (in long-lived parser processes,
  `fake_parse_pool.py`); an unparseable file ends ERROR with an `error_code` (the local
  parser's code, upper-cased).
* When the job ends it calls back, retrying non-2xx answers (409, 429, 5xx, connection
  errors) with backoff like a webhook sender:
  - `callback` mode: the native v1 body `{txt, md, json, images}` to the `webhook_url`;
  - `relay` mode: the signed seed callback of DESIGN.md §5 to `{origin of webhook_url}/
    webhooks/llamaparse`, for SUCCESS only, keyed per job from `--webhook-secret`; job and
    document ids come from the `docingest_job_id`/`docingest_document_id` form fields;
  - `none`: no callback (the client must poll).

Test-only routes: `GET|POST /control` (see `Faults`), `GET /stats` (with `faults_injected`:
each injected fault actually served, by kind; `job_seconds`: each finished job's time from
upload to result, as this service measured it), `GET /healthz`.
Uploaded documents carry PHI: nothing here logs their content, only counts.

Modules, one job each: `faults`, `state`, `formats` (result shapes), `jobs` (one job's
life), `callbacks` (delivery and its faults), `app` (the routes) and `cli` (the process).
"""

from docingest.testing.fake_llamaparse.app import create_app
from docingest.testing.fake_llamaparse.cli import main
from docingest.testing.fake_llamaparse.faults import Faults, validate_control
from docingest.testing.fake_llamaparse.state import FakeJob, FakeState

__all__ = ["FakeJob", "FakeState", "Faults", "create_app", "main", "validate_control"]
