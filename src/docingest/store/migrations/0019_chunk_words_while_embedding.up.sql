-- A chunk's words (0017) are parsed while the document is embedding, not when it is chunked.
-- Generated at insert, they were most of the chunking stage: to_tsvector of 1,800 chunks of
-- plain text took 0.45 s of the 0.55 s that inserting them did (bench/chunk_words_cost.py),
-- and the document waited for it before its first embedding request. Now the column is
-- plain: the worker fills it for each window of chunks once that window's texts are on their
-- way to the provider (store/chunks.py `parse_words`), so the parsing overlaps the provider's
-- latency. A row whose words were never filled (a worker that died in between, rows of the
-- 001 migration) is parsed by document_chunks' trigger (0017) at promotion, so search never
-- depends on it.
ALTER TABLE docingest.document_chunk_buffer ALTER COLUMN text_words DROP EXPRESSION;
