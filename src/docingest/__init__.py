"""docingest: ingestion back end for sensitive insurance documents."""

__version__ = "0.1.0"
