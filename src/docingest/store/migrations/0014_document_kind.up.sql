-- What kind of insurance document this is (pipeline/document_kind.py: sbc, eoc, formulary, ...),
-- read from the parsed text's title when the worker chunks it; NULL until then, and for
-- documents chunked before this migration (search reports them as "unknown").
ALTER TABLE docingest.documents ADD COLUMN kind text;
GRANT UPDATE (kind) ON docingest.documents TO docingest_worker;
