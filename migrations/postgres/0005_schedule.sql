-- Step 7: what the scheduler must do and what it did.
--
-- `requests.due_at` is the earliest instant at which the scheduler has something to do
-- for a request (a transition or a reminder). A sweep at T reads only rows with
-- due_at <= T through a partial index, whatever the size of the register.
ALTER TABLE requests ADD COLUMN due_at BIGINT;
CREATE INDEX requests_due ON requests (due_at) WHERE due_at IS NOT NULL;

-- One row per reminder per recipient address. The key (reminder key + address) is
-- unique: whoever inserts it first owns it, so a reminder is queued once across
-- replicas. Queued rows are sent in one digest per recipient per sweep; `skipped` rows
-- were superseded by a later reminder of the same kind during catch-up.
CREATE TABLE reminders (
    key        TEXT PRIMARY KEY,
    request_id BIGINT REFERENCES requests (id),
    platform   TEXT NOT NULL,
    target     TEXT NOT NULL,
    due_at     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    status     TEXT NOT NULL,
    sent_at    BIGINT,
    body       TEXT NOT NULL
);
CREATE INDEX reminders_queued ON reminders (platform, target) WHERE status = 'queued';
CREATE INDEX reminders_by_request ON reminders (request_id, due_at);
