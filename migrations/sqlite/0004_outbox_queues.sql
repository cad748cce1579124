-- One row per conversation with pending messages: when its head-of-line message is
-- next due. Claiming reads only due conversations (index on next_attempt_at) and
-- finds each head with an index seek, whatever the size of the backlog.
CREATE TABLE outbox_queues (
    platform        TEXT NOT NULL,
    target          TEXT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    PRIMARY KEY (platform, target)
);
CREATE INDEX outbox_queues_due ON outbox_queues (next_attempt_at);
INSERT INTO outbox_queues (platform, target, next_attempt_at)
    SELECT platform, target, MIN(next_attempt_at) FROM outbox WHERE status = 'pending'
    GROUP BY platform, target;
