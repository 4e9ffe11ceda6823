-- Each taking of a flow's update lock advances the flow's epoch, so that a
-- holder whose session ended can tell, taking the lock again, whether
-- anyone held it meanwhile.
CREATE TABLE {{schema}}.tidemark_locks (
    flow  text PRIMARY KEY,
    epoch bigint NOT NULL
);
