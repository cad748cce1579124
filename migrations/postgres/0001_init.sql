-- Waiver schema, PostgreSQL flavour. Instants are BIGINT unix milliseconds (UTC); ids TEXT.
-- Records are append-only except conditions (done) and the outbox (delivery state).

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('request', 0);

-- One row per exception request: its current state and the columns that queries and
-- the scheduler filter on. `body` holds the rest of the aggregate (JSON).
CREATE TABLE requests (
    id               BIGINT PRIMARY KEY,
    revision         BIGINT NOT NULL,
    state            TEXT NOT NULL,
    version          BIGINT NOT NULL,
    requester        TEXT NOT NULL,
    business_owner   TEXT NOT NULL,
    title            TEXT NOT NULL,
    ai_system        TEXT NOT NULL,
    policy_id        TEXT NOT NULL,
    policy_version   TEXT NOT NULL,
    tier             TEXT,
    risk_score       BIGINT,
    renews           BIGINT REFERENCES requests (id),
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    stage_since      BIGINT NOT NULL,
    starts_at        BIGINT,
    expires_at       BIGINT,
    next_review_at   BIGINT,
    monitoring_owner TEXT,
    body             TEXT NOT NULL
);
CREATE INDEX requests_by_requester ON requests (requester, id);
CREATE INDEX requests_by_owner ON requests (monitoring_owner) WHERE monitoring_owner IS NOT NULL;
CREATE INDEX requests_by_state ON requests (state, stage_since);
CREATE INDEX requests_by_system ON requests (ai_system);
CREATE INDEX requests_by_policy ON requests (policy_id, policy_version);
CREATE INDEX requests_by_update ON requests (updated_at);

CREATE TABLE request_versions (
    request_id BIGINT NOT NULL REFERENCES requests (id),
    version    BIGINT NOT NULL,
    author     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (request_id, version)
);

-- Completeness verdicts.
CREATE TABLE reviews (
    request_id BIGINT NOT NULL REFERENCES requests (id),
    seq        BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    reviewer   TEXT NOT NULL,
    verdict    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

CREATE TABLE assessments (
    request_id BIGINT NOT NULL REFERENCES requests (id),
    seq        BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    role       TEXT NOT NULL,
    assessor   TEXT NOT NULL,
    likelihood BIGINT NOT NULL,
    impact     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

-- Stakeholder feedback and thread replies.
CREATE TABLE comments (
    request_id BIGINT NOT NULL REFERENCES requests (id),
    seq        BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    author     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

-- Every approver's vote, with exactly what they saw and the rules it was made under.
CREATE TABLE decisions (
    request_id      BIGINT NOT NULL REFERENCES requests (id),
    seq             BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    approver        TEXT NOT NULL,
    role            TEXT NOT NULL,
    verdict         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    governance_hash TEXT NOT NULL,
    policy_version  TEXT NOT NULL,
    body            TEXT NOT NULL,
    snapshot        TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

CREATE TABLE conditions (
    request_id   BIGINT NOT NULL REFERENCES requests (id),
    condition_id BIGINT NOT NULL,
    owner        TEXT NOT NULL,
    due          TEXT NOT NULL,
    done_by      TEXT,
    done_at      BIGINT,
    body         TEXT NOT NULL,
    PRIMARY KEY (request_id, condition_id)
);
CREATE INDEX conditions_open ON conditions (due) WHERE done_at IS NULL;

CREATE TABLE attestations (
    request_id BIGINT NOT NULL REFERENCES requests (id),
    seq        BIGINT NOT NULL,
    attested_by TEXT NOT NULL,
    answer     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

-- Hash-chained audit log: hash = SHA-256(prev_hash || entry), entry = canonical JSON.
CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    request_id BIGINT,
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    entry      TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_by_request ON audit (request_id, seq) WHERE request_id IS NOT NULL;

-- The chain's head, so a truncated tail is detected too.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Outgoing chat messages, written in the same transaction as the change that caused them.
CREATE TABLE outbox (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    created_at      BIGINT NOT NULL,
    request_id      BIGINT,
    platform        TEXT NOT NULL,
    target          TEXT NOT NULL,
    card_key        TEXT,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    sent_at         BIGINT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending';

-- Requests already processed (Slack event_id, Teams activity id, ...).
CREATE TABLE idempotency (
    key        TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
