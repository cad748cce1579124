-- The register's dimensions as columns, so the dashboard filters and counts by them
-- with index scans: the department, the regions (comma-separated ids) and the month
-- the request was filed (YYYY-MM, UTC).
ALTER TABLE requests ADD COLUMN department TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN regions TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN created_month TEXT NOT NULL DEFAULT '';
UPDATE requests SET
    created_month = strftime('%Y-%m', created_at / 1000, 'unixepoch'),
    department = COALESCE((SELECT json_extract(v.body, '$.content.department') FROM request_versions v
        WHERE v.request_id = requests.id ORDER BY v.version DESC LIMIT 1), ''),
    regions = COALESCE((SELECT group_concat(r.value, ',') FROM request_versions v,
        json_each(json_extract(v.body, '$.content.regions')) r
        WHERE v.request_id = requests.id AND v.version = requests.version), '');
-- The dashboard's counts by every dimension read this index alone, in its order.
CREATE INDEX requests_register ON requests (created_month, department, policy_id, tier, regions, state);
-- What expires soon (the dashboard's "expiring in the next 30 days").
CREATE INDEX requests_by_expiry ON requests (expires_at) WHERE expires_at IS NOT NULL;
-- What waits, and how long, by tier: index-only.
DROP INDEX requests_by_state;
CREATE INDEX requests_by_state ON requests (state, stage_since, tier);
