-- Index-backed lookups: similar exceptions by normalised AI system name or policy
-- (newest first), and the exceptions a person monitors by expiry.
ALTER TABLE requests ADD COLUMN ai_system_key TEXT NOT NULL DEFAULT '';
UPDATE requests SET ai_system_key = lower(trim(ai_system));
DROP INDEX requests_by_system;
CREATE INDEX requests_by_system_key ON requests (ai_system_key, id);
CREATE INDEX requests_by_policy_id ON requests (policy_id, id);
DROP INDEX requests_by_owner;
CREATE INDEX requests_by_owner ON requests (monitoring_owner, expires_at) WHERE monitoring_owner IS NOT NULL;
