"""`docingest validate`: the Phase 4 validation suite (DESIGN.md §9) as software."""
