-- artisync on SQLite: the artifact store, deployments, the outbox, gateway
-- status and the persistence store, in one file. Timestamps are integer
-- microseconds since the Unix epoch (UTC); lists are JSON arrays. Text
-- compares bytewise (BINARY), which keyset paging relies on.

CREATE TABLE apis (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    version          TEXT NOT NULL DEFAULT '',
    context          TEXT NOT NULL,
    latest_revision  INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    CONSTRAINT apis_name_version_key UNIQUE (name, version),
    CONSTRAINT apis_context_key UNIQUE (context)
);

CREATE TABLE api_revisions (
    api_id      TEXT NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    revision    INTEGER NOT NULL CHECK (revision >= 1),
    sha256      TEXT NOT NULL,
    artifact    BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (api_id, revision)
);

-- What each label should run: one row per (API, label).
CREATE TABLE deployments (
    api_id       TEXT NOT NULL,
    label        TEXT NOT NULL,
    revision     INTEGER NOT NULL,
    sequence     INTEGER NOT NULL,
    deployed_at  INTEGER NOT NULL,
    PRIMARY KEY (api_id, label),
    FOREIGN KEY (api_id, revision) REFERENCES api_revisions (api_id, revision) ON DELETE CASCADE
);
CREATE INDEX deployments_label_idx ON deployments (label, api_id);

-- Monotonic numbers kept in the database: item_version (persistence store
-- item versions, never reused). Change numbers come from the one writer,
-- which continues from the highest number label_sequences holds.
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('item_version', 0);

-- The highest change number per label, removals included, raised by every
-- outbox row.
CREATE TABLE label_sequences (
    label     TEXT PRIMARY KEY,
    sequence  INTEGER NOT NULL
);

-- Events written in the same transaction as the change they describe.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    routing_key  TEXT NOT NULL,
    payload      BLOB NOT NULL,
    traceparent  TEXT,
    sequence     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    sent_at      INTEGER
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;

CREATE TRIGGER outbox_raises_label_sequence AFTER INSERT ON outbox
BEGIN
    INSERT INTO label_sequences (label, sequence) VALUES (NEW.routing_key, NEW.sequence)
    ON CONFLICT (label) DO UPDATE SET sequence = max(sequence, excluded.sequence);
END;

-- Gateway nodes as they last reported themselves.
CREATE TABLE gateway_nodes (
    node_id         TEXT PRIMARY KEY,
    labels          TEXT NOT NULL,
    ready           INTEGER NOT NULL DEFAULT 0,
    started_at      INTEGER,
    last_heartbeat  INTEGER NOT NULL,
    details         TEXT NOT NULL DEFAULT '{}'
);

-- Per node and API: what the node runs (ACK) or failed to run (NACK).
CREATE TABLE gateway_api_states (
    node_id     TEXT NOT NULL REFERENCES gateway_nodes (node_id) ON DELETE CASCADE,
    api_id      TEXT NOT NULL,
    revision    INTEGER,
    sha256      TEXT,
    status      TEXT NOT NULL,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (node_id, api_id)
);
CREATE INDEX gateway_api_states_api_idx ON gateway_api_states (api_id);

-- Persistence store (DESIGN.md §8), as on PostgreSQL.
CREATE TABLE stores (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT NOT NULL CHECK (length(CAST(name AS BLOB)) BETWEEN 1 AND 256),
    org_id               TEXT NOT NULL CHECK (length(CAST(org_id AS BLOB)) BETWEEN 1 AND 256),
    env_id               TEXT NOT NULL CHECK (length(CAST(env_id AS BLOB)) BETWEEN 1 AND 256),
    default_ttl_seconds  INTEGER NOT NULL CHECK (default_ttl_seconds BETWEEN 1 AND 2592000),
    is_fixed_ttl         INTEGER NOT NULL DEFAULT 0,
    persistent           INTEGER NOT NULL DEFAULT 1,
    encrypted            INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    CONSTRAINT unique_store UNIQUE (name, org_id, env_id)
);
CREATE INDEX stores_org_env_name_idx ON stores (org_id, env_id, name);

CREATE TABLE items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL CHECK (length(CAST(key AS BLOB)) BETWEEN 1 AND 1024 AND instr(key, '|') = 0),
    partition   TEXT NOT NULL CHECK (length(CAST(partition AS BLOB)) BETWEEN 1 AND 256),
    store_id    INTEGER NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    value_type  TEXT NOT NULL CHECK (value_type IN ('STRING', 'NUMBER', 'BINARY')),
    value       BLOB NOT NULL,
    version     INTEGER NOT NULL,
    -- Expiry instant, microseconds; rows past it are invisible.
    ttl         INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CONSTRAINT unique_item UNIQUE (key, store_id, partition)
);
CREATE INDEX ttl_index ON items (ttl);
CREATE INDEX items_store_partition_key_idx ON items (store_id, partition, key);
