-- The deletion scan pages through a source's rows by id; without this index
-- each page sorted every row of the source.
CREATE INDEX tidemark_rows_scan ON tidemark_rows (source_id, id);
