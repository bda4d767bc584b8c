-- Receipts (DESIGN.md §13): every change that concerns gateways, and when
-- each node was recorded as serving the revision it runs.

CREATE TABLE changes (
    sequence      bigint PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('DEPLOY', 'REMOVE')),
    api_id        uuid NOT NULL,
    name          text NOT NULL,
    version       text NOT NULL,
    revision      integer NOT NULL,
    sha256        text NOT NULL,
    labels        text[] NOT NULL,
    committed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX changes_api_revision_idx ON changes (api_id, revision, sequence);

ALTER TABLE gateway_api_states ADD COLUMN applied_at timestamptz;
CREATE INDEX gateway_api_states_applied_idx ON gateway_api_states (applied_at)
    WHERE applied_at IS NOT NULL;
