-- When a message's first delivery attempt began, by the delivering server's clock. An
-- attempt in doubt is looked for in the conversation from then (or from when the row
-- was queued, if earlier): a message queued by a sweep at another instant
-- (`waiver sweep --at`) lands at the time it was sent, not at that instant.
ALTER TABLE outbox ADD COLUMN first_attempt_at BIGINT;
