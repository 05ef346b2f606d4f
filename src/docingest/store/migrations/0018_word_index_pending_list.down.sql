DROP FUNCTION IF EXISTS docingest.merge_pending_words();
-- back to 0013: merge what is pending, then update the tree row by row again
SELECT gin_clean_pending_list('docingest.document_chunks_text_tsv'::regclass);
ALTER INDEX docingest.document_chunks_text_tsv SET (fastupdate = off);
ALTER INDEX docingest.document_chunks_text_tsv RESET (gin_pending_list_limit);
