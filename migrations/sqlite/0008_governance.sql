-- Every governance file the bot has run under, exactly as hashed: a decision names
-- the hash of the file it was made under, and an evidence pack carries the file.
CREATE TABLE governance_files (
    hash       TEXT PRIMARY KEY,
    first_seen BIGINT NOT NULL,
    source     TEXT NOT NULL
);
