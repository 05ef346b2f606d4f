"""Postgres and blob access. Everything that touches the database or the disk lives here."""
