DROP INDEX IF EXISTS docingest.document_chunks_text_tsv;
ALTER TABLE docingest.document_chunks DROP COLUMN IF EXISTS text_tsv;
