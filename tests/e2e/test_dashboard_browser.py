"""`/admin/dashboard` in a real headless Chromium against a real `docingest api` process: the
page renders with the admin token (a valid, non-blank PNG screenshot) and its DOM carries the
job funnel with the uploaded document counted."""

from __future__ import annotations

import base64
import struct
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, ViewportSize, sync_playwright

from docingest.security.bearer_tokens import mint_token
from docingest.testing.procs import free_port, run_process
from tests.conftest import EXAMPLES
from tests.e2e.conftest import JWT_SECRET, stack_env

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1000, "height": 800}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Decodes a PNG with the browser's own decoder and counts the distinct colours in it.
_COLOURS_JS = """async (src) => {
  const img = new Image();
  img.src = src;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, img.width, img.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4) {
    seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return seen.size;
}"""


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (which must come first)."""
    assert png[:8] == PNG_SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def distinct_colours(page: Page, png: bytes) -> int:
    page.goto("about:blank")
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    n: int = page.evaluate(_COLOURS_JS, src)
    return n


def test_dashboard_renders_in_headless_chromium(dsn: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`make test` does when apt is there)"
        )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = stack_env(dsn, tmp_path / "home")
    args = [sys.executable, "-m", "docingest", "api", "--port", str(port)]
    with run_process(args, env=env, ready_url=f"{base}/readyz", timeout_s=60):
        pdf = EXAMPLES / "sbc_uhc_bronze_2026.pdf"
        user_token = mint_token(JWT_SECRET, uuid.uuid4())
        r = httpx.post(
            f"{base}/v1/documents",
            files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")},
            headers={"Authorization": f"Bearer {user_token}"},
            timeout=30,
        )
        assert r.status_code == 202, r.text
        admin_token = mint_token(JWT_SECRET, uuid.uuid4(), admin=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                context = browser.new_context(
                    viewport=VIEWPORT,
                    extra_http_headers={"Authorization": f"Bearer {admin_token}"},
                )
                page = context.new_page()
                response = page.goto(f"{base}/admin/dashboard")
                assert response is not None and response.status == 200
                assert page.locator("#funnel tr").count() == 13  # every job status
                uploaded = page.locator('#funnel tr[data-key="uploaded"] td.n')
                assert uploaded.inner_text() == "1"
                assert page.locator('#funnel tr[data-key="complete"] td.n').inner_text() == "0"
                assert page.locator("#queue-depth b").inner_text() == "1"
                shot = page.screenshot(full_page=False)
                assert png_size(shot) == (VIEWPORT["width"], VIEWPORT["height"])
                # text, bars and backgrounds: a blank or failed render has one or two colours
                assert distinct_colours(page, shot) > 16
            finally:
                browser.close()
