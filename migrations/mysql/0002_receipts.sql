-- Receipts (DESIGN.md §13): every change that concerns gateways, and when
-- each node was recorded as serving the revision it runs. As on
-- PostgreSQL; the labels of a change are kept as a JSON array (sorted)
-- and one per row in change_labels, for joins.

CREATE TABLE changes (
    sequence      BIGINT NOT NULL PRIMARY KEY,
    kind          VARCHAR(16) NOT NULL,
    api_id        CHAR(36) NOT NULL,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    revision      INT NOT NULL,
    sha256        CHAR(64) NOT NULL,
    labels        LONGTEXT NOT NULL,
    committed_at  DATETIME(6) NOT NULL,
    CONSTRAINT changes_kind_check CHECK (kind IN ('DEPLOY', 'REMOVE')),
    KEY changes_api_revision_idx (api_id, revision, sequence)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE change_labels (
    sequence  BIGINT NOT NULL,
    label     VARCHAR(255) NOT NULL,
    PRIMARY KEY (sequence, label),
    CONSTRAINT change_labels_change_fk FOREIGN KEY (sequence)
        REFERENCES changes (sequence) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

ALTER TABLE gateway_api_states
    ADD COLUMN applied_at DATETIME(6) NULL,
    ADD KEY gateway_api_states_applied_idx (applied_at);
