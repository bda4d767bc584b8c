-- Persistence store (DESIGN.md §8): the Object Store v2 data model on
-- PostgreSQL. The `stores` and `items` tables follow MuleSoft's Persistence
-- Gateway schema (same names, same unique constraints, same ttl index) so
-- operators recognise them; the extra columns carry what artisync adds:
-- item versions (ETag / If-Match) and a byte-ordered key for keyset paging.

CREATE TABLE stores (
    id                  BIGSERIAL    PRIMARY KEY,
    -- The client-facing `storeId`; bytewise collation for keyset paging.
    name                TEXT COLLATE "C" NOT NULL
        CHECK (octet_length(name) BETWEEN 1 AND 256),
    org_id              TEXT         NOT NULL
        CHECK (octet_length(org_id) BETWEEN 1 AND 256),
    env_id              TEXT         NOT NULL
        CHECK (octet_length(env_id) BETWEEN 1 AND 256),
    -- 1 s to 30 days, as Object Store v2 allows.
    default_ttl_seconds INTEGER      NOT NULL
        CHECK (default_ttl_seconds BETWEEN 1 AND 2592000),
    is_fixed_ttl        BOOLEAN      NOT NULL DEFAULT FALSE,
    persistent          BOOLEAN      NOT NULL DEFAULT TRUE,
    encrypted           BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at          TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT unique_store UNIQUE (name, org_id, env_id)
);

-- Store listings page by name within one organisation and environment.
CREATE INDEX stores_org_env_name_idx ON stores (org_id, env_id, name);

-- Versions come from one sequence rather than `version + 1`: an ETag is then
-- never reused for a key, not even after the item was deleted or purged and
-- written again, so a stale If-Match can never succeed by coincidence.
CREATE SEQUENCE item_version_seq AS BIGINT;

CREATE TABLE items (
    id           BIGSERIAL    PRIMARY KEY,
    -- Bytewise collation: keyset pagination compares keys with `>` and the
    -- order must be total and locale-independent.
    key          TEXT COLLATE "C" NOT NULL
        CHECK (octet_length(key) BETWEEN 1 AND 1024 AND strpos(key, '|') = 0),
    partition    TEXT COLLATE "C" NOT NULL
        CHECK (octet_length(partition) BETWEEN 1 AND 256),
    store_id     BIGINT       NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    value_type   TEXT         NOT NULL
        CHECK (value_type IN ('STRING', 'NUMBER', 'BINARY')),
    -- STRING: UTF-8 bytes (bytea so that NUL characters survive);
    -- NUMBER: the JSON number literal exactly as the client sent it;
    -- BINARY: the decoded bytes.
    value        BYTEA        NOT NULL,
    version      BIGINT       NOT NULL DEFAULT nextval('item_version_seq'),
    -- Expiry instant; rows past it are invisible and removed by the purge job.
    ttl          TIMESTAMPTZ  NOT NULL,
    created_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT unique_item UNIQUE (key, store_id, partition)
);

-- The purge job deletes `WHERE ttl < now()` in bounded batches.
CREATE INDEX ttl_index ON items (ttl);
-- Key listings (keyset on key) and partition listings (distinct partitions)
-- of one store; also serves ON DELETE CASCADE from stores.
CREATE INDEX items_store_partition_key_idx ON items (store_id, partition, key);
