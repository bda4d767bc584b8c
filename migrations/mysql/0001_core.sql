-- artisync on MySQL 8 / MariaDB >= 10.6: the artifact store, deployments,
-- the transactional outbox and gateway status (the persistence store stays
-- on PostgreSQL or SQLite). One schema, used by the publisher and the
-- traffic manager.
--
-- Text is utf8mb4 compared bytewise (utf8mb4_bin), as PostgreSQL compares
-- it: "/Menu" and "/menu" are two contexts. Names, versions and contexts
-- have no length limit, so their uniqueness is kept on SHA-256 digests of
-- them (stored generated columns). Timestamps are DATETIME(6) in UTC (the
-- backend's sessions run with time_zone '+00:00').

CREATE TABLE apis (
    id               CHAR(36) NOT NULL PRIMARY KEY,
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    context          TEXT NOT NULL,
    -- The length prefix keeps ("a:b", "") and ("a", ":b") apart.
    name_version_key BINARY(32) AS (UNHEX(SHA2(CONCAT(LENGTH(name), ':', name, version), 256))) STORED,
    context_key      BINARY(32) AS (UNHEX(SHA2(context, 256))) STORED,
    latest_revision  INT NOT NULL,
    created_at       DATETIME(6) NOT NULL,
    updated_at       DATETIME(6) NOT NULL,
    CONSTRAINT apis_name_version_key UNIQUE (name_version_key),
    CONSTRAINT apis_context_key UNIQUE (context_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE api_revisions (
    api_id      CHAR(36) NOT NULL,
    revision    INT NOT NULL,
    sha256      CHAR(64) NOT NULL,
    artifact    LONGBLOB NOT NULL,
    created_at  DATETIME(6) NOT NULL,
    PRIMARY KEY (api_id, revision),
    CONSTRAINT api_revisions_revision_check CHECK (revision >= 1),
    CONSTRAINT api_revisions_api_fk FOREIGN KEY (api_id) REFERENCES apis (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- What each label should run: one row per (API, label).
CREATE TABLE deployments (
    api_id       CHAR(36) NOT NULL,
    label        VARCHAR(255) NOT NULL,
    revision     INT NOT NULL,
    sequence     BIGINT NOT NULL,
    deployed_at  DATETIME(6) NOT NULL,
    PRIMARY KEY (api_id, label),
    KEY deployments_label_idx (label, api_id),
    CONSTRAINT deployments_revision_fk FOREIGN KEY (api_id, revision)
        REFERENCES api_revisions (api_id, revision) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Global, monotonic change numbers: each change inserts a row and takes
-- its id (an auto-increment lock is held for the insert only, not until
-- commit, so changes to different APIs do not wait for each other). The
-- relay's pruning keeps the highest row, so that the counter never goes
-- back, whatever the server does with auto-increment values on restart.
CREATE TABLE change_numbers (
    n  BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY
) ENGINE = InnoDB;

-- The highest change number per label, removals included, so that a
-- gateway can tell "nothing changed" from "something was removed".
CREATE TABLE label_sequences (
    label     VARCHAR(255) NOT NULL PRIMARY KEY,
    sequence  BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Events written in the same transaction as the change they describe.
CREATE TABLE outbox (
    id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id     CHAR(36) NOT NULL,
    routing_key  VARCHAR(255) NOT NULL,
    payload      LONGBLOB NOT NULL,
    traceparent  TEXT,
    sequence     BIGINT NOT NULL,
    created_at   DATETIME(6) NOT NULL,
    sent_at      DATETIME(6),
    CONSTRAINT outbox_event_id_key UNIQUE (event_id),
    KEY outbox_unsent_idx (sent_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Gateway nodes as they last reported themselves. `labels` is the JSON
-- array as reported (in its order); gateway_node_labels holds the same
-- labels one per row, for joins.
CREATE TABLE gateway_nodes (
    node_id         VARCHAR(128) NOT NULL PRIMARY KEY,
    labels          LONGTEXT NOT NULL,
    ready           BOOLEAN NOT NULL DEFAULT FALSE,
    started_at      DATETIME(6),
    last_heartbeat  DATETIME(6) NOT NULL,
    details         LONGTEXT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE gateway_node_labels (
    node_id  VARCHAR(128) NOT NULL,
    label    VARCHAR(255) NOT NULL,
    PRIMARY KEY (node_id, label),
    KEY gateway_node_labels_label_idx (label),
    CONSTRAINT gateway_node_labels_node_fk FOREIGN KEY (node_id)
        REFERENCES gateway_nodes (node_id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per node and API: what the node runs (ACK) or failed to run (NACK).
-- `report_mark` is the mark of the last full report that listed the row:
-- a full report deletes the node's rows it did not list.
CREATE TABLE gateway_api_states (
    node_id      VARCHAR(128) NOT NULL,
    api_id       CHAR(36) NOT NULL,
    revision     INT,
    sha256       CHAR(64),
    status       VARCHAR(32) NOT NULL,
    error        TEXT,
    attempts     INT NOT NULL DEFAULT 0,
    updated_at   DATETIME(6) NOT NULL,
    report_mark  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (node_id, api_id),
    KEY gateway_api_states_api_idx (api_id),
    CONSTRAINT gateway_api_states_node_fk FOREIGN KEY (node_id)
        REFERENCES gateway_nodes (node_id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
