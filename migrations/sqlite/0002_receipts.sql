-- Receipts (DESIGN.md §13): every change that concerns gateways, and when
-- each node was recorded as serving the revision it runs.

CREATE TABLE changes (
    sequence      INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('DEPLOY', 'REMOVE')),
    api_id        TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    revision      INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    -- JSON array of label names.
    labels        TEXT NOT NULL,
    committed_at  INTEGER NOT NULL
);
CREATE INDEX changes_api_revision_idx ON changes (api_id, revision, sequence);

ALTER TABLE gateway_api_states ADD COLUMN applied_at INTEGER;
CREATE INDEX gateway_api_states_applied_idx ON gateway_api_states (applied_at)
    WHERE applied_at IS NOT NULL;
