-- The artifact store, deployments, the transactional outbox and gateway
-- status. One schema, used by the publisher and the traffic manager.

CREATE TABLE apis (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    version          text NOT NULL DEFAULT '',
    context          text NOT NULL,
    latest_revision  integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT apis_name_version_key UNIQUE (name, version),
    CONSTRAINT apis_context_key UNIQUE (context)
);

CREATE TABLE api_revisions (
    api_id      uuid NOT NULL REFERENCES apis (id) ON DELETE CASCADE,
    revision    integer NOT NULL CHECK (revision >= 1),
    sha256      text NOT NULL,
    artifact    bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_id, revision)
);

-- What each label should run: one row per (API, label).
CREATE TABLE deployments (
    api_id       uuid NOT NULL,
    label        text NOT NULL,
    revision     integer NOT NULL,
    sequence     bigint NOT NULL,
    deployed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_id, label),
    FOREIGN KEY (api_id, revision) REFERENCES api_revisions (api_id, revision) ON DELETE CASCADE
);
CREATE INDEX deployments_label_idx ON deployments (label, api_id);

-- Global, monotonic change numbers.
CREATE SEQUENCE change_sequence;

-- The highest change number per label, removals included, so that a
-- gateway can tell "nothing changed" from "something was removed".
CREATE TABLE label_sequences (
    label     text PRIMARY KEY,
    sequence  bigint NOT NULL
);

-- Events written in the same transaction as the change they describe.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    routing_key  text NOT NULL,
    payload      bytea NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;

CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('artisync_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Gateway nodes as they last reported themselves.
CREATE TABLE gateway_nodes (
    node_id         text PRIMARY KEY,
    labels          text[] NOT NULL,
    ready           boolean NOT NULL DEFAULT false,
    started_at      timestamptz,
    last_heartbeat  timestamptz NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- Per node and API: what the node runs (ACK) or failed to run (NACK).
CREATE TABLE gateway_api_states (
    node_id       text NOT NULL REFERENCES gateway_nodes (node_id) ON DELETE CASCADE,
    api_id        uuid NOT NULL,
    revision      integer,
    sha256        text,
    status        text NOT NULL,
    error         text,
    attempts      integer NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, api_id)
);
CREATE INDEX gateway_api_states_api_idx ON gateway_api_states (api_id);
