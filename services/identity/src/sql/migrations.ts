import type { Migration } from "@taskmesh/kit";

/** The schema `identity`: API keys, token families and their refresh tokens, signing keys, and the audit log (also the outbox of topic `taskmesh.identity`). */
export const migrations: readonly Migration[] = [
  {
    id: "0001_init",
    sql: `
      -- API keys: only the SHA-256 of the secret is stored, plus its first
      -- characters for display. name_held marks the keys whose name is taken
      -- (active ones): revoking or replacing an expired key releases it.
      CREATE TABLE identity.api_keys (
        id uuid PRIMARY KEY,
        name text NOT NULL CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
        subject text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 128),
        scopes text[] NOT NULL CHECK (cardinality(scopes) >= 1),
        prefix text NOT NULL,
        secret_hash bytea NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by text NOT NULL,
        expires_at timestamptz,
        last_used_at timestamptz,
        revoked_at timestamptz,
        revoke_reason text,
        name_held boolean NOT NULL DEFAULT true
      );
      CREATE UNIQUE INDEX api_keys_held_name ON identity.api_keys (name) WHERE name_held;
      CREATE INDEX api_keys_by_subject ON identity.api_keys (subject, id DESC);

      -- A token family: the refresh tokens of one IssueToken, rotated one
      -- after the other, with the family's absolute end of life.
      CREATE TABLE identity.families (
        id uuid PRIMARY KEY,
        api_key_id uuid NOT NULL REFERENCES identity.api_keys (id),
        subject text NOT NULL,
        scopes text[] NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        revoked_at timestamptz,
        revoke_reason text
      );
      CREATE INDEX families_active_by_subject ON identity.families (subject) WHERE revoked_at IS NULL;
      CREATE INDEX families_active_by_key ON identity.families (api_key_id) WHERE revoked_at IS NULL;

      -- Refresh tokens, by the SHA-256 of the token. A rotated one is
      -- retired (retired_at, successor_id); presenting it again is reuse.
      CREATE TABLE identity.refresh_tokens (
        id uuid PRIMARY KEY,
        family_id uuid NOT NULL REFERENCES identity.families (id),
        token_hash bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
        issued_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        retired_at timestamptz,
        successor_id uuid
      );
      CREATE INDEX refresh_tokens_by_family ON identity.refresh_tokens (family_id);

      -- RS256 signing keys; the private key is encrypted under the
      -- key-encryption key (AES-256-GCM, the kid as associated data).
      CREATE TABLE identity.signing_keys (
        kid text PRIMARY KEY,
        state text NOT NULL CHECK (state IN ('pending', 'active', 'retiring', 'retired')),
        alg text NOT NULL DEFAULT 'RS256',
        public_jwk jsonb NOT NULL,
        private_key bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        activates_at timestamptz NOT NULL,
        retired_at timestamptz,
        removed_at timestamptz
      );
      CREATE UNIQUE INDEX signing_keys_one_active ON identity.signing_keys ((true)) WHERE state = 'active';

      -- Every credential event, written in the transaction of the change it
      -- records; the audit relay publishes unpublished rows in seq order.
      CREATE TABLE identity.audit (
        seq bigserial PRIMARY KEY,
        id uuid NOT NULL UNIQUE,
        action smallint NOT NULL CHECK (action BETWEEN 1 AND 9),
        outcome smallint NOT NULL CHECK (outcome IN (1, 2)),
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor text NOT NULL DEFAULT '',
        subject text NOT NULL DEFAULT '',
        api_key_id text NOT NULL DEFAULT '',
        family_id text NOT NULL DEFAULT '',
        kid text NOT NULL DEFAULT '',
        reason text NOT NULL DEFAULT '',
        trace_id text NOT NULL DEFAULT '',
        traceparent text NOT NULL DEFAULT '',
        client_ip text NOT NULL DEFAULT '',
        details jsonb,
        published_at timestamptz
      );
      CREATE INDEX audit_unpublished ON identity.audit (seq) WHERE published_at IS NULL;
      CREATE INDEX audit_denied_by_client ON identity.audit (client_ip, action, created_at) WHERE outcome = 2;
    `,
  },
];
