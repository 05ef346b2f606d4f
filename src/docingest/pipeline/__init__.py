"""Pure pipeline logic: ids, hashes, normalization, tokens, chunking, hash embeddings, batching.

Nothing in this package performs I/O (no database, network, or file access); every function is
deterministic computation on its arguments, so it can be unit-tested and reused by the worker,
the API, the fakes and the migration tools alike.
"""
