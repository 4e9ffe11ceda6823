-- Row keys compare byte by byte, as in the SQLite store, whatever the
-- database's collation: a source's rows page in the same order on both.
ALTER TABLE {{schema}}.tidemark_rows ALTER COLUMN key TYPE text COLLATE "C";
