-- Tidemark state store, SQLite. Times are Unix microseconds.

CREATE TABLE tidemark_flows (
    name       TEXT PRIMARY KEY,
    gen        INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE tidemark_sources (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    flow TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (flow, name)
);

-- Setup states of the targets a flow declares itself: containers and their
-- attachments. staged holds records of changes staged but not committed.
CREATE TABLE tidemark_targets (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    flow          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    key           TEXT NOT NULL,
    parent_id     INTEGER NOT NULL DEFAULT 0,
    committed     INTEGER NOT NULL DEFAULT 0,
    record        BLOB,
    staged        BLOB,
    destroyed_gen INTEGER NOT NULL DEFAULT 0,
    lost_gen      INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL,
    UNIQUE (flow, key)
);

-- One row per source row: what was seen and what was written.
CREATE TABLE tidemark_rows (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id    INTEGER NOT NULL,
    key          TEXT NOT NULL,
    ordinal      INTEGER,
    content_fp   BLOB,
    logic_fp     BLOB,
    gen          INTEGER NOT NULL DEFAULT 0,
    tracking     BLOB,
    staged       BLOB,
    error        TEXT,
    error_count  INTEGER NOT NULL DEFAULT 0,
    error_at     INTEGER,
    processed_at INTEGER,
    UNIQUE (source_id, key)
);

CREATE INDEX tidemark_rows_failing ON tidemark_rows (source_id, error_at) WHERE error IS NOT NULL;

-- Which source rows declare (or staged) each target key, so that a target
-- state declared by two source rows stays until neither declares it.
CREATE TABLE tidemark_owners (
    target_id INTEGER NOT NULL,
    key_hash  BLOB NOT NULL,
    row_id    INTEGER NOT NULL,
    PRIMARY KEY (target_id, key_hash, row_id)
) WITHOUT ROWID;
