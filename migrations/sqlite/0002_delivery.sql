-- Delivery bookkeeping: where each card was posted (so it is updated in place, never
-- re-posted), and per-row attempt state for crash-safe, exactly-once posting.

CREATE TABLE cards (
    platform   TEXT NOT NULL,
    card_key   TEXT NOT NULL,
    request_id BIGINT,
    channel    TEXT NOT NULL,
    message_ts TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (platform, card_key)
);
CREATE INDEX cards_by_message ON cards (platform, channel, message_ts);

-- in_doubt = 1 while an attempt is under way or ended without a definite answer
-- (crash, timeout): the next attempt first looks for the message in the channel.
ALTER TABLE outbox ADD COLUMN in_doubt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN remote_channel TEXT;
ALTER TABLE outbox ADD COLUMN remote_ts TEXT;
CREATE INDEX outbox_by_target ON outbox (platform, target, id) WHERE status = 'pending';
CREATE INDEX outbox_by_card ON outbox (platform, card_key, id) WHERE status = 'pending';
