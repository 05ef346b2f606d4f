"""Test doubles and process helpers shipped with docingest.

`fake_openai` is an OpenAI-compatible `/v1/embeddings` server with deterministic vectors,
rate-limit headers and fault injection, runnable as
`python -m docingest.testing.fake_openai`. `procs` starts helper processes for tests and
waits until they answer. Nothing here is imported by the production code paths.
"""
