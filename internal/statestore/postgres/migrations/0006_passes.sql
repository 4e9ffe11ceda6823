-- Passes shared by several workers (statestore.Coordinator): a source's
-- open pass, with its listing lease, and the claims of the keys it found
-- to need work.
CREATE TABLE {{schema}}.tidemark_passes (
    id bigserial PRIMARY KEY,
    source_id bigint NOT NULL REFERENCES {{schema}}.tidemark_sources (id) ON DELETE CASCADE,
    started_at timestamptz NOT NULL DEFAULT now(),
    lister text NOT NULL,
    lister_fence bigint NOT NULL,
    lister_until timestamptz NOT NULL,
    listed boolean NOT NULL DEFAULT false,
    finished_at timestamptz
);
CREATE UNIQUE INDEX tidemark_passes_open ON {{schema}}.tidemark_passes (source_id) WHERE finished_at IS NULL;

-- state: 0 pending, 1 claimed (by worker until until, with fence), 2 done.
CREATE TABLE {{schema}}.tidemark_claims (
    pass_id bigint NOT NULL REFERENCES {{schema}}.tidemark_passes (id) ON DELETE CASCADE,
    key text COLLATE "C" NOT NULL,
    listed bytea,
    state smallint NOT NULL DEFAULT 0,
    worker text,
    fence bigint NOT NULL DEFAULT 0,
    until timestamptz,
    PRIMARY KEY (pass_id, key)
);
CREATE INDEX tidemark_claims_open ON {{schema}}.tidemark_claims (pass_id, key) WHERE state < 2;
