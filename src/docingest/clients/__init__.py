"""Clients of the parser and the embedder (local and remote)."""
