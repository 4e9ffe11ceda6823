-- A pass's mode (the engine's: incremental, full reprocess, reexport), set
-- by the worker that opens it: a worker in another mode does not join it.
ALTER TABLE {{schema}}.tidemark_passes ADD COLUMN mode smallint NOT NULL DEFAULT 0;
