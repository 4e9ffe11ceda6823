-- The outbox of change hooks (statestore.Outbox): the committed changes of
-- target states not delivered yet, written by the commit that makes them.
-- A change is identified by its state (target_id, key), the source row
-- that made it and its number among that row's changes of the state; it is
-- kept once. Keys are bytea: a target state's key is any bytes. A change
-- being delivered is leased by worker until lease_until, under fence; a
-- failed delivery counts an attempt and waits until next_at. A target's
-- changes go with it.
CREATE TABLE {{schema}}.tidemark_outbox (
    id           bigserial PRIMARY KEY,
    target_id    bigint NOT NULL REFERENCES {{schema}}.tidemark_targets (id) ON DELETE CASCADE,
    source_id    bigint NOT NULL,
    row_key      text COLLATE "C" NOT NULL,
    key          bytea NOT NULL,
    seq          bigint NOT NULL,
    old_value    bytea,
    new_value    bytea,
    committed_at timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    next_at      timestamptz,
    worker       text,
    fence        bigint NOT NULL DEFAULT 0,
    lease_until  timestamptz,
    UNIQUE (target_id, source_id, row_key, key, seq)
);

-- A state's changes in commit order: whether a change is its state's
-- oldest, at one probe; also the deletion of a target's changes.
CREATE INDEX tidemark_outbox_state ON {{schema}}.tidemark_outbox (target_id, key, id);

-- The failing changes, few, for OutboxStatus.
CREATE INDEX tidemark_outbox_failing ON {{schema}}.tidemark_outbox (target_id, id) WHERE attempts > 0;
