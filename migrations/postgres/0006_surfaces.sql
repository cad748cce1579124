-- One engine, many surfaces.
--
-- Posted messages are referenced in the surface's own terms: `conversation` and
-- `message` are the ids a surface looks a message up by (Slack: channel + ts; Teams:
-- conversation id + activity id), `reference` is the surface's own JSON for anything
-- else it needs to update the message (Teams: the serviceUrl).
ALTER TABLE cards RENAME COLUMN channel TO conversation;
ALTER TABLE cards RENAME COLUMN message_ts TO message;
ALTER TABLE cards ADD COLUMN reference TEXT;
ALTER TABLE outbox RENAME COLUMN remote_channel TO remote_conversation;
ALTER TABLE outbox RENAME COLUMN remote_ts TO remote_message;

-- Recorded events: what happened to a request, by whom and when, one row per change
-- (the status timeline and the register read these, not the audit entries' JSON).
CREATE TABLE request_events (
    request_id BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    PRIMARY KEY (request_id, revision)
);
INSERT INTO request_events (request_id, revision, at, actor, kind, version)
SELECT request_id,
       (entry::jsonb #>> '{details,revision}')::BIGINT,
       at,
       actor,
       CASE entry::jsonb #>> '{details,event,event}'
         WHEN 'voted' THEN CASE entry::jsonb #>> '{details,event,vote,verdict}'
                             WHEN 'approve' THEN 'approved' ELSE 'rejected' END
         ELSE entry::jsonb #>> '{details,event,event}' END,
       (entry::jsonb #>> '{details,version}')::BIGINT
FROM audit
WHERE outcome = 'applied' AND request_id IS NOT NULL
  AND entry::jsonb #>> '{details,revision}' IS NOT NULL
  AND entry::jsonb #>> '{details,event,event}' IS NOT NULL
ON CONFLICT DO NOTHING;

-- What waits on an owner (`pending`, App Home): their exceptions by state, and the
-- open conditions they own.
CREATE INDEX requests_by_owner_state ON requests (monitoring_owner, state, stage_since)
    WHERE monitoring_owner IS NOT NULL;
-- Open conditions by owner.
CREATE INDEX conditions_open_by_owner ON conditions (owner, request_id) WHERE done_at IS NULL;
