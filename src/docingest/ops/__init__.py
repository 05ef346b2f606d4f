"""Operator tools that run beside the pipeline: the 001 migration, its rollback and its
parallel-run comparison."""
