-- What the engine keeps about a source besides its rows: the options of
-- its last accepted complete listing, and its last update's statistics.
ALTER TABLE {{schema}}.tidemark_sources ADD COLUMN options bytea, ADD COLUMN last_update bytea;
