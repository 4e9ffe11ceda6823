-- The outbox of change hooks (statestore.Outbox): the committed changes of
-- target states not delivered yet, written by the commit that makes them.
-- A change is identified by its state (target_id, key), the source row
-- that made it and its number among that row's changes of the state; it is
-- kept once. A change being delivered is leased by worker until
-- lease_until, under fence; a failed delivery counts an attempt and waits
-- until next_at. A target's changes are deleted with it (by the store:
-- foreign keys are not enforced).
CREATE TABLE tidemark_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target_id    INTEGER NOT NULL,
    source_id    INTEGER NOT NULL,
    row_key      TEXT NOT NULL,
    key          TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    old_value    BLOB,
    new_value    BLOB,
    committed_at INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    next_at      INTEGER,
    worker       TEXT,
    fence        INTEGER NOT NULL DEFAULT 0,
    lease_until  INTEGER,
    UNIQUE (target_id, source_id, row_key, key, seq)
);

-- A state's changes in commit order: whether a change is its state's
-- oldest, at one probe.
CREATE INDEX tidemark_outbox_state ON tidemark_outbox (target_id, key, id);

-- The failing changes, few, for OutboxStatus.
CREATE INDEX tidemark_outbox_failing ON tidemark_outbox (target_id, id) WHERE attempts > 0;
