"""Moved to `docingest.security.outbound` (issue 14). Kept only for `store/blobs_s3.py`, which
issue 14 part B rewrites: delete this module when that import names the new home."""

from docingest.security.outbound import require_tls_or_loopback

__all__ = ["require_tls_or_loopback"]
