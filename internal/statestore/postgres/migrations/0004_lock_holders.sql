-- Who holds a flow's update lock, recorded when it is taken, so that an
-- update refused the lock can say who holds it. holder_backend is the
-- server process of the holder's session: the record is believed only
-- while that session holds the flow's advisory lock, not after it ended.
ALTER TABLE {{schema}}.tidemark_locks
    ADD COLUMN holder_backend integer,
    ADD COLUMN holder_pid integer,
    ADD COLUMN holder_host text,
    ADD COLUMN holder_since timestamptz;
