-- Tidemark state store, PostgreSQL. {{schema}} is replaced by the store's
-- schema, quoted, so that nothing depends on the search_path. Ids come from
-- sequences and are never reused. Times are timestamptz (microseconds).

CREATE TABLE {{schema}}.tidemark_flows (
    name       text PRIMARY KEY,
    gen        bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL
);

CREATE TABLE {{schema}}.tidemark_sources (
    id   bigserial PRIMARY KEY,
    flow text NOT NULL,
    name text NOT NULL,
    UNIQUE (flow, name)
);

-- Setup states of the targets a flow declares itself: containers and their
-- attachments. staged holds records of changes staged but not committed
-- (statestore.EncodeRecords).
CREATE TABLE {{schema}}.tidemark_targets (
    id            bigserial PRIMARY KEY,
    flow          text NOT NULL,
    kind          text NOT NULL,
    key           text NOT NULL,
    parent_id     bigint NOT NULL DEFAULT 0,
    committed     boolean NOT NULL DEFAULT false,
    record        bytea,
    staged        bytea,
    destroyed_gen bigint NOT NULL DEFAULT 0,
    lost_gen      bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL,
    UNIQUE (flow, key)
);

-- One row per source row: what was seen and what was written.
CREATE TABLE {{schema}}.tidemark_rows (
    id           bigserial PRIMARY KEY,
    source_id    bigint NOT NULL,
    key          text NOT NULL,
    ordinal      bigint,
    content_fp   bytea,
    logic_fp     bytea,
    gen          bigint NOT NULL DEFAULT 0,
    tracking     bytea,
    staged       bytea,
    error        text,
    error_count  bigint NOT NULL DEFAULT 0,
    error_at     timestamptz,
    processed_at timestamptz,
    UNIQUE (source_id, key)
);

CREATE INDEX tidemark_rows_failing ON {{schema}}.tidemark_rows (source_id, error_at) WHERE error IS NOT NULL;

-- RowScan pages through one source's rows by id.
CREATE INDEX tidemark_rows_scan ON {{schema}}.tidemark_rows (source_id, id);

-- Which source rows declare (or staged) each target key, so that a target
-- state declared by two source rows stays until neither declares it.
CREATE TABLE {{schema}}.tidemark_owners (
    target_id bigint NOT NULL,
    key_hash  bytea NOT NULL,
    row_id    bigint NOT NULL,
    PRIMARY KEY (target_id, key_hash, row_id)
);
