-- The last worker to write in each target, for a worker that fills a
-- target no row owned when it began (statestore.Coordinator.TargetWriter).
CREATE TABLE {{schema}}.tidemark_target_writers (
    target_id bigint PRIMARY KEY REFERENCES {{schema}}.tidemark_targets (id) ON DELETE CASCADE,
    worker text NOT NULL
);
