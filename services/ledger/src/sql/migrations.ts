import type { Migration } from "@taskmesh/kit";

/**
 * The schema `ledger`: tasks, their append-only history, the transactional
 * outbox and worker records. The state machine is enforced here too: CHECK
 * constraints tie columns to states, and a trigger refuses any transition
 * that the contract does not allow (and any change of a finished task).
 */
export const migrations: readonly Migration[] = [
  {
    id: "0001_init",
    sql: `
      CREATE TABLE ledger.tasks (
        id uuid PRIMARY KEY DEFAULT uuidv7(),
        capability text NOT NULL CHECK (capability ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
        state text NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')),
        input jsonb NOT NULL,
        output jsonb,
        error jsonb,
        attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        max_attempts integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
        worker_id text NOT NULL DEFAULT '',
        trace_id text NOT NULL DEFAULT '' CHECK (trace_id = '' OR trace_id ~ '^[0-9a-f]{32}$'),
        traceparent text NOT NULL DEFAULT '',
        idempotency_key text NOT NULL DEFAULT '',
        request_hash text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
        priority integer NOT NULL CHECK (priority BETWEEN 0 AND 9),
        labels jsonb NOT NULL DEFAULT '{}',
        timeout_ms integer NOT NULL CHECK (timeout_ms BETWEEN 1000 AND 86400000),
        retry_initial_ms integer NOT NULL CHECK (retry_initial_ms BETWEEN 0 AND 3600000),
        retry_max_ms integer NOT NULL CHECK (retry_max_ms BETWEEN retry_initial_ms AND 3600000),
        retry_multiplier double precision NOT NULL CHECK (retry_multiplier BETWEEN 1 AND 10),
        created_by text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz,
        next_attempt_at timestamptz,
        lease_id uuid UNIQUE,
        lease_worker_id text,
        lease_acquired_at timestamptz,
        lease_expires_at timestamptz,
        progress jsonb,
        sequence bigint NOT NULL CHECK (sequence >= 1),
        CHECK (attempts <= max_attempts),
        CHECK ((state = 'PENDING') = (next_attempt_at IS NOT NULL)),
        CHECK ((state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')) = (finished_at IS NOT NULL)),
        CHECK (state IN ('PENDING', 'RUNNING') OR lease_id IS NULL),
        CHECK (state <> 'RUNNING' OR (lease_id IS NOT NULL AND started_at IS NOT NULL AND attempts >= 1)),
        CHECK ((lease_id IS NULL) = (lease_worker_id IS NULL)
           AND (lease_id IS NULL) = (lease_acquired_at IS NULL)
           AND (lease_id IS NULL) = (lease_expires_at IS NULL)),
        CHECK ((state = 'SUCCEEDED') = (output IS NOT NULL)),
        CHECK (state NOT IN ('FAILED', 'TIMED_OUT') OR error IS NOT NULL)
      );
      -- Idempotency keys are scoped to the submitter.
      CREATE UNIQUE INDEX tasks_idempotency ON ledger.tasks (created_by, idempotency_key) WHERE idempotency_key <> '';
      CREATE INDEX tasks_dispatch ON ledger.tasks (capability, priority DESC, next_attempt_at) WHERE state = 'PENDING';
      CREATE INDEX tasks_leases ON ledger.tasks (lease_expires_at) WHERE lease_id IS NOT NULL;
      CREATE INDEX tasks_running ON ledger.tasks (started_at) WHERE state = 'RUNNING';
      CREATE INDEX tasks_created ON ledger.tasks (created_at);

      -- The state machine, enforced by the database itself.
      CREATE FUNCTION ledger.check_task_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP = 'INSERT' THEN
          IF NEW.state <> 'PENDING' OR NEW.sequence <> 1 OR NEW.attempts <> 0 THEN
            RAISE EXCEPTION 'a task starts PENDING at sequence 1 with no attempt' USING ERRCODE = 'check_violation';
          END IF;
          RETURN NEW;
        END IF;
        IF OLD.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT') THEN
          RAISE EXCEPTION 'task % is % (finished) and cannot change', OLD.id, OLD.state USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.id <> OLD.id OR NEW.capability <> OLD.capability OR NEW.input <> OLD.input
           OR NEW.created_at <> OLD.created_at OR NEW.created_by <> OLD.created_by OR NEW.request_hash <> OLD.request_hash THEN
          RAISE EXCEPTION 'task % changed an immutable column', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.state <> OLD.state AND NOT (
             (OLD.state = 'PENDING' AND NEW.state IN ('RUNNING', 'CANCELLED'))
          OR (OLD.state = 'RUNNING' AND NEW.state IN ('PENDING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'))) THEN
          RAISE EXCEPTION 'illegal task transition % -> %', OLD.state, NEW.state USING ERRCODE = 'check_violation';
        END IF;
        IF (NEW.state <> OLD.state AND NEW.sequence <> OLD.sequence + 1)
           OR (NEW.state = OLD.state AND NEW.sequence <> OLD.sequence) THEN
          RAISE EXCEPTION 'task % sequence must grow by one per transition', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
      END
      $fn$;
      CREATE TRIGGER tasks_state_machine BEFORE INSERT OR UPDATE ON ledger.tasks
        FOR EACH ROW EXECUTE FUNCTION ledger.check_task_change();

      -- Append-only: one row per transition, without gaps.
      CREATE TABLE ledger.history (
        task_id uuid NOT NULL REFERENCES ledger.tasks (id),
        sequence bigint NOT NULL CHECK (sequence >= 1),
        kind text NOT NULL CHECK (kind IN ('SUBMITTED', 'STARTED', 'SUCCEEDED', 'FAILED', 'RETRYING', 'RELEASED', 'CANCELLED', 'TIMED_OUT')),
        from_state text NOT NULL,
        to_state text NOT NULL,
        attempt integer NOT NULL CHECK (attempt >= 0),
        worker_id text NOT NULL DEFAULT '',
        lease_id text NOT NULL DEFAULT '',
        at timestamptz NOT NULL DEFAULT now(),
        reason text NOT NULL DEFAULT '' CHECK (char_length(reason) <= 256),
        error jsonb,
        trace_id text NOT NULL DEFAULT '',
        next_attempt_at timestamptz,
        actor text NOT NULL DEFAULT '',
        PRIMARY KEY (task_id, sequence),
        CHECK ((kind = 'SUBMITTED') = (sequence = 1))
      );
      CREATE INDEX history_by_lease ON ledger.history (lease_id) WHERE lease_id <> '';
      CREATE FUNCTION ledger.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'check_violation';
      END
      $fn$;
      CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON ledger.history
        FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();

      -- The transactional outbox: one row per event, written with the change; the relay sets published_at.
      CREATE TABLE ledger.outbox (
        id bigserial PRIMARY KEY,
        event_id uuid NOT NULL UNIQUE,
        task_id uuid NOT NULL,
        sequence bigint NOT NULL,
        type text NOT NULL CHECK (type ~ '^taskmesh[.]task[.]v1[.][a-z_]+$'),
        payload bytea NOT NULL,
        traceparent text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        published_at timestamptz
      );
      CREATE INDEX outbox_unpublished ON ledger.outbox (id) WHERE published_at IS NULL;

      CREATE TABLE ledger.workers (
        worker_id text PRIMARY KEY CHECK (worker_id <> ''),
        info jsonb NOT NULL,
        capabilities text[] NOT NULL DEFAULT '{}',
        state text NOT NULL CHECK (state IN ('CONNECTED', 'DRAINING', 'GONE')),
        session_id text NOT NULL,
        coordinator_id text NOT NULL DEFAULT '',
        connected_at timestamptz NOT NULL,
        last_heartbeat_at timestamptz NOT NULL,
        disconnected_at timestamptz,
        in_flight integer NOT NULL DEFAULT 0 CHECK (in_flight >= 0),
        load double precision NOT NULL DEFAULT 0 CHECK (load BETWEEN 0 AND 1),
        first_seen_at timestamptz NOT NULL,
        CHECK ((state = 'GONE') = (disconnected_at IS NOT NULL))
      );
    `,
  },
  {
    id: "0002_outbox_notify",
    sql: `
      -- Wakes the outbox relay when a transaction that wrote outbox rows commits
      -- (it polls as well, so a missed notification only costs latency).
      CREATE FUNCTION ledger.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        PERFORM pg_notify('ledger_outbox', '');
        RETURN NULL;
      END
      $fn$;
      CREATE TRIGGER outbox_notify AFTER INSERT ON ledger.outbox FOR EACH STATEMENT EXECUTE FUNCTION ledger.notify_outbox();
    `,
  },
  {
    id: "0003_outbox_no_notify",
    sql: `
      -- NOTIFY takes a database-wide lock from the commit of a notifying
      -- transaction until its WAL is flushed, so every task transition
      -- committed one at a time (about one fsync each). The ledger wakes its
      -- own relay after each write instead; a relay on another replica polls.
      DROP TRIGGER outbox_notify ON ledger.outbox;
      DROP FUNCTION ledger.notify_outbox();
    `,
  },
  {
    id: "0004_dispatch_order_index",
    sql: `
      -- The dispatch order in full (id breaks ties of one batch's shared
      -- next_attempt_at), so a claim reads the head of the queue in index
      -- order instead of sorting every pending task of the capability.
      CREATE INDEX tasks_dispatch_order ON ledger.tasks (capability, priority DESC, next_attempt_at, id) WHERE state = 'PENDING';
      DROP INDEX ledger.tasks_dispatch;
    `,
  },
  {
    id: "0005_dispatch_index_without_leases",
    sql: `
      -- Only what a claim may take: pending and not leased. A claimed task
      -- leaves the index with its lease (it held every task in flight, so
      -- each claim walked past them, and a lease update added an entry),
      -- and comes back when its lease is handed back or swept.
      CREATE INDEX tasks_dispatch_due ON ledger.tasks (capability, priority DESC, next_attempt_at, id) WHERE state = 'PENDING' AND lease_id IS NULL;
      DROP INDEX ledger.tasks_dispatch_order;
    `,
  },
  {
    id: "0006_start_and_finish_in_one_write",
    sql: `
      -- A claimed task whose result comes before its start is STARTED and
      -- SUCCEEDED in one row write (two history rows, two events): from
      -- PENDING under a lease straight to SUCCEEDED, the sequence grown by
      -- two. Every other rule stays.
      CREATE OR REPLACE FUNCTION ledger.check_task_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP = 'INSERT' THEN
          IF NEW.state <> 'PENDING' OR NEW.sequence <> 1 OR NEW.attempts <> 0 THEN
            RAISE EXCEPTION 'a task starts PENDING at sequence 1 with no attempt' USING ERRCODE = 'check_violation';
          END IF;
          RETURN NEW;
        END IF;
        IF OLD.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT') THEN
          RAISE EXCEPTION 'task % is % (finished) and cannot change', OLD.id, OLD.state USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.id <> OLD.id OR NEW.capability <> OLD.capability OR NEW.input <> OLD.input
           OR NEW.created_at <> OLD.created_at OR NEW.created_by <> OLD.created_by OR NEW.request_hash <> OLD.request_hash THEN
          RAISE EXCEPTION 'task % changed an immutable column', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        IF OLD.state = 'PENDING' AND NEW.state = 'SUCCEEDED' AND OLD.lease_id IS NOT NULL THEN
          IF NEW.sequence <> OLD.sequence + 2 OR NEW.attempts <> OLD.attempts + 1 THEN
            RAISE EXCEPTION 'task % must start and succeed in two steps of the sequence', OLD.id USING ERRCODE = 'check_violation';
          END IF;
          RETURN NEW;
        END IF;
        IF NEW.state <> OLD.state AND NOT (
             (OLD.state = 'PENDING' AND NEW.state IN ('RUNNING', 'CANCELLED'))
          OR (OLD.state = 'RUNNING' AND NEW.state IN ('PENDING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'))) THEN
          RAISE EXCEPTION 'illegal task transition % -> %', OLD.state, NEW.state USING ERRCODE = 'check_violation';
        END IF;
        IF (NEW.state <> OLD.state AND NEW.sequence <> OLD.sequence + 1)
           OR (NEW.state = OLD.state AND NEW.sequence <> OLD.sequence) THEN
          RAISE EXCEPTION 'task % sequence must grow by one per transition', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
      END
      $fn$;
    `,
  },
  {
    id: "0007_outbox_delete_on_publish",
    sql: `
      -- The relay deletes what Kafka acknowledged instead of marking it: a
      -- mark wrote a second row version and index entries for every event,
      -- and the table grew without end. Kafka keeps the events (with its own
      -- retention) and ledger.history every transition; what the outbox
      -- holds is exactly what is not on Kafka yet, read in id order.
      DELETE FROM ledger.outbox WHERE published_at IS NOT NULL;
      DROP INDEX ledger.outbox_unpublished;
      ALTER TABLE ledger.outbox DROP COLUMN published_at;
    `,
  },
  {
    id: "0008_lease_ids_unique_where_leased",
    sql: `
      -- A B-tree holds NULLs too: the UNIQUE constraint on lease_id took an
      -- entry for every version of every task, leased or not (each insert,
      -- each write that ends a lease). Only leased rows need one.
      CREATE UNIQUE INDEX tasks_lease_id ON ledger.tasks (lease_id) WHERE lease_id IS NOT NULL;
      ALTER TABLE ledger.tasks DROP CONSTRAINT tasks_lease_id_key;
    `,
  },
  {
    id: "0009_history_without_foreign_key",
    sql: `
      -- Every history row is written by the statement (or the transaction)
      -- that writes its task's row, so the foreign key proved nothing the
      -- writer does not, and its check (a key-share lock on the task row,
      -- one per transition) cost about 15 µs of a task's Postgres time.
      ALTER TABLE ledger.history DROP CONSTRAINT history_task_id_fkey;
    `,
  },
  {
    id: "0010_history_removed_with_its_task",
    sql: `
      -- Retention removes finished tasks after a while (retention.ts), and
      -- their history with them: a history row stays append-only while its
      -- task exists, and may be deleted once the task row is gone (the
      -- retention pass deletes the tasks first, then their history, in one
      -- transaction).
      CREATE FUNCTION ledger.check_history_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM ledger.tasks WHERE id = OLD.task_id) THEN
          RETURN OLD;
        END IF;
        RAISE EXCEPTION 'history is append-only while its task exists' USING ERRCODE = 'check_violation';
      END
      $fn$;
      DROP TRIGGER history_append_only ON ledger.history;
      CREATE TRIGGER history_append_only BEFORE UPDATE OR DELETE ON ledger.history
        FOR EACH ROW EXECUTE FUNCTION ledger.check_history_change();
    `,
  },
  {
    id: "0011_history_is_the_outbox",
    sql: `
      -- Each history row is also its transition's event: the relay reads
      -- history in (txid, task_id, sequence) order past its cursor, only rows
      -- of transactions older than every one still running (so none that
      -- commits later can fall behind the cursor), and builds the event from
      -- the row and its task (outbox-relay.ts). The outbox keeps only
      -- progress reports, which are no transitions. Rows written before this
      -- migration had their events written to the outbox: txid 0, and the
      -- cursor starts past them.
      ALTER TABLE ledger.history ADD COLUMN event_id uuid, ADD COLUMN txid xid8 NOT NULL DEFAULT '0';
      ALTER TABLE ledger.history ALTER COLUMN event_id SET DEFAULT uuidv7(), ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
      -- The relay's order in full, so a read past the cursor is a range of the
      -- index in order (with only txid, a generic plan sorted the table).
      CREATE INDEX history_relay ON ledger.history (txid, task_id, sequence);
      CREATE TABLE ledger.relay_cursor (
        relay text PRIMARY KEY,
        txid xid8 NOT NULL,
        task_id uuid NOT NULL,
        sequence bigint NOT NULL
      );
      INSERT INTO ledger.relay_cursor VALUES ('tasks', '0', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 9223372036854775807);
    `,
  },
  {
    id: "0012_workflows",
    sql: `
      -- Workflows: named tasks with dependencies (a DAG) submitted together.
      -- A task with dependencies starts WAITING, counting in waiting_on the
      -- dependencies that have not SUCCEEDED; the transaction that makes
      -- the last of them SUCCEEDED makes it PENDING (READY), its input's
      -- {"$ref": "<name>[.<field>…]"} replaced by their outputs; a
      -- dependency ending otherwise cancels per the workflow's failure
      -- policy. The database itself does both (workflow_task_finished), so
      -- every path that finishes a task (results, failures, sweeps,
      -- cancels) moves the graph, in its own transaction.
      CREATE TABLE ledger.workflows (
        id uuid PRIMARY KEY,
        name text NOT NULL DEFAULT '' CHECK (char_length(name) <= 256),
        failure_policy text NOT NULL CHECK (failure_policy IN ('FAIL_FAST', 'CONTINUE')),
        idempotency_key text NOT NULL DEFAULT '',
        request_hash text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
        created_by text NOT NULL DEFAULT '',
        labels jsonb NOT NULL DEFAULT '{}',
        trace_id text NOT NULL DEFAULT '',
        task_count integer NOT NULL CHECK (task_count BETWEEN 1 AND 10000),
        created_at timestamptz NOT NULL DEFAULT now(),
        cancelled_at timestamptz
      );
      CREATE UNIQUE INDEX workflows_idempotency ON ledger.workflows (created_by, idempotency_key) WHERE idempotency_key <> '';

      ALTER TABLE ledger.tasks
        ADD COLUMN workflow_id uuid,
        ADD COLUMN workflow_step text,
        ADD COLUMN depends_on uuid[],
        ADD COLUMN waiting_on integer NOT NULL DEFAULT 0 CHECK (waiting_on >= 0),
        ADD CHECK ((workflow_id IS NULL) = (workflow_step IS NULL)),
        ADD CHECK (workflow_id IS NOT NULL OR (depends_on IS NULL AND waiting_on = 0));
      ALTER TABLE ledger.tasks DROP CONSTRAINT tasks_state_check,
        ADD CONSTRAINT tasks_state_check CHECK (state IN ('WAITING', 'PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'));
      ALTER TABLE ledger.tasks ADD CHECK ((state = 'WAITING') = (waiting_on > 0));
      CREATE INDEX tasks_workflow ON ledger.tasks (workflow_id, id) WHERE workflow_id IS NOT NULL;
      -- Who waits for whom: a task's dependents, found from the dependency.
      CREATE TABLE ledger.task_deps (
        depends_on uuid NOT NULL,
        task_id uuid NOT NULL,
        PRIMARY KEY (depends_on, task_id)
      );
      ALTER TABLE ledger.history DROP CONSTRAINT history_kind_check,
        ADD CONSTRAINT history_kind_check CHECK (kind IN ('SUBMITTED', 'STARTED', 'SUCCEEDED', 'FAILED', 'RETRYING', 'RELEASED', 'CANCELLED', 'TIMED_OUT', 'READY'));

      -- The state machine, with WAITING: a workflow task may start WAITING,
      -- and leaves it for PENDING (its input resolved) or CANCELLED.
      CREATE OR REPLACE FUNCTION ledger.check_task_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP = 'INSERT' THEN
          IF NEW.state NOT IN ('PENDING', 'WAITING') OR NEW.sequence <> 1 OR NEW.attempts <> 0 THEN
            RAISE EXCEPTION 'a task starts PENDING or WAITING at sequence 1 with no attempt' USING ERRCODE = 'check_violation';
          END IF;
          RETURN NEW;
        END IF;
        IF OLD.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT') THEN
          RAISE EXCEPTION 'task % is % (finished) and cannot change', OLD.id, OLD.state USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.id <> OLD.id OR NEW.capability <> OLD.capability OR (NEW.input <> OLD.input AND NOT (OLD.state = 'WAITING' AND NEW.state = 'PENDING'))
           OR NEW.created_at <> OLD.created_at OR NEW.created_by <> OLD.created_by OR NEW.request_hash <> OLD.request_hash
           OR NEW.workflow_id IS DISTINCT FROM OLD.workflow_id OR NEW.depends_on IS DISTINCT FROM OLD.depends_on THEN
          RAISE EXCEPTION 'task % changed an immutable column', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        IF OLD.state = 'PENDING' AND NEW.state = 'SUCCEEDED' AND OLD.lease_id IS NOT NULL THEN
          IF NEW.sequence <> OLD.sequence + 2 OR NEW.attempts <> OLD.attempts + 1 THEN
            RAISE EXCEPTION 'task % must start and succeed in two steps of the sequence', OLD.id USING ERRCODE = 'check_violation';
          END IF;
          RETURN NEW;
        END IF;
        IF NEW.state <> OLD.state AND NOT (
             (OLD.state = 'WAITING' AND NEW.state IN ('PENDING', 'CANCELLED'))
          OR (OLD.state = 'PENDING' AND NEW.state IN ('RUNNING', 'CANCELLED'))
          OR (OLD.state = 'RUNNING' AND NEW.state IN ('PENDING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'))) THEN
          RAISE EXCEPTION 'illegal task transition % -> %', OLD.state, NEW.state USING ERRCODE = 'check_violation';
        END IF;
        IF (NEW.state <> OLD.state AND NEW.sequence <> OLD.sequence + 1)
           OR (NEW.state = OLD.state AND NEW.sequence <> OLD.sequence) THEN
          RAISE EXCEPTION 'task % sequence must grow by one per transition', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
      END
      $fn$;

      -- A value with every {"$ref": "<name>[.<field>…]"} in it replaced by
      -- that path of outputs ({name: output}); null where the path is absent.
      CREATE FUNCTION ledger.resolve_refs(value jsonb, outputs jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
      BEGIN
        IF jsonb_typeof(value) = 'object' THEN
          IF value ? '$ref' AND jsonb_typeof(value -> '$ref') = 'string' AND (SELECT count(*) FROM jsonb_object_keys(value)) = 1 THEN
            RETURN COALESCE(outputs #> string_to_array(value ->> '$ref', '.'), 'null'::jsonb);
          END IF;
          RETURN (SELECT COALESCE(jsonb_object_agg(e.key, ledger.resolve_refs(e.value, outputs)), '{}'::jsonb) FROM jsonb_each(value) AS e);
        ELSIF jsonb_typeof(value) = 'array' THEN
          RETURN (SELECT COALESCE(jsonb_agg(ledger.resolve_refs(e.value, outputs) ORDER BY e.n), '[]'::jsonb)
                  FROM jsonb_array_elements(value) WITH ORDINALITY AS e(value, n));
        END IF;
        RETURN value;
      END
      $fn$;

      -- Cancels the unfinished tasks among ids (WAITING, PENDING or RUNNING),
      -- their leases ended, each with its CANCELLED transition; answers how
      -- many. Cascades from these cancels are off meanwhile (the caller
      -- chose every task to cancel).
      CREATE FUNCTION ledger.cancel_workflow_tasks(ids uuid[], why text, by_actor text) RETURNS integer LANGUAGE plpgsql AS $fn$
      DECLARE
        n integer;
      BEGIN
        PERFORM set_config('taskmesh.workflow_cascade', 'off', true);
        WITH prior AS (
          SELECT id, state FROM ledger.tasks
          WHERE id = ANY(ids) AND state IN ('WAITING', 'PENDING', 'RUNNING') ORDER BY id FOR UPDATE
        ), cancelled AS (
          UPDATE ledger.tasks t SET state = 'CANCELLED', finished_at = now(), updated_at = now(), next_attempt_at = NULL, waiting_on = 0,
            lease_id = NULL, lease_worker_id = NULL, lease_acquired_at = NULL, lease_expires_at = NULL, sequence = t.sequence + 1
          FROM prior WHERE t.id = prior.id
          RETURNING t.id, t.sequence, prior.state AS from_state, t.attempts, t.worker_id, t.trace_id
        ), history AS (
          INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, worker_id, at, reason, trace_id, actor)
          SELECT id, sequence, 'CANCELLED', from_state, 'CANCELLED', attempts, worker_id, now(), why, trace_id, by_actor FROM cancelled
        )
        SELECT count(*) INTO n FROM cancelled;
        PERFORM set_config('taskmesh.workflow_cascade', 'on', true);
        RETURN n;
      END
      $fn$;

      -- A workflow task finished: on SUCCEEDED its dependents count one
      -- fewer, and those left with none become PENDING (READY); otherwise
      -- the failure policy cancels (FAIL_FAST: every unfinished task of the
      -- workflow; CONTINUE: the tasks that depend on it, directly or not).
      CREATE FUNCTION ledger.workflow_task_finished() RETURNS trigger LANGUAGE plpgsql AS $fn$
      DECLARE
        targets uuid[];
        policy text;
      BEGIN
        IF current_setting('taskmesh.workflow_cascade', true) = 'off' THEN
          RETURN NULL;
        END IF;
        IF NEW.state = 'SUCCEEDED' THEN
          -- Lock the dependents first: a transaction finishing another of
          -- their dependencies holds them until it commits, and the next
          -- statement's snapshot then sees its count and its output.
          PERFORM 1 FROM ledger.tasks t JOIN ledger.task_deps d ON t.id = d.task_id
          WHERE d.depends_on = NEW.id AND t.state = 'WAITING' ORDER BY t.id FOR UPDATE OF t;
          WITH changed AS (
            UPDATE ledger.tasks t SET waiting_on = t.waiting_on - 1, updated_at = now(),
              state = CASE WHEN t.waiting_on = 1 THEN 'PENDING' ELSE t.state END,
              next_attempt_at = CASE WHEN t.waiting_on = 1 THEN now() END,
              sequence = CASE WHEN t.waiting_on = 1 THEN t.sequence + 1 ELSE t.sequence END,
              input = CASE WHEN t.waiting_on > 1 OR position('"$ref"' IN t.input::text) = 0 THEN t.input
                           ELSE ledger.resolve_refs(t.input, (SELECT COALESCE(jsonb_object_agg(u.workflow_step, u.output), '{}'::jsonb)
                                                               FROM ledger.tasks u WHERE u.id = ANY(t.depends_on))) END
            FROM ledger.task_deps d
            WHERE d.depends_on = NEW.id AND t.id = d.task_id AND t.state = 'WAITING'
            RETURNING t.id, t.state, t.sequence, t.trace_id, t.next_attempt_at
          )
          INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, at, trace_id, next_attempt_at, actor)
          SELECT id, sequence, 'READY', 'WAITING', 'PENDING', 0, now(), trace_id, next_attempt_at, 'ledger' FROM changed WHERE state = 'PENDING';
          RETURN NULL;
        END IF;
        SELECT w.failure_policy INTO policy FROM ledger.workflows w WHERE w.id = NEW.workflow_id AND w.cancelled_at IS NULL;
        IF policy IS NULL THEN
          RETURN NULL;
        ELSIF policy = 'FAIL_FAST' THEN
          SELECT array_agg(id) INTO targets FROM ledger.tasks
          WHERE workflow_id = NEW.workflow_id AND state IN ('WAITING', 'PENDING', 'RUNNING');
          IF targets IS NOT NULL THEN
            PERFORM ledger.cancel_workflow_tasks(targets, 'BIZ_WORKFLOW_FAILED: task ' || NEW.workflow_step || ' ended ' || NEW.state, 'ledger');
          END IF;
        ELSE
          WITH RECURSIVE below(id) AS (
            SELECT task_id FROM ledger.task_deps WHERE depends_on = NEW.id
            UNION
            SELECT d.task_id FROM ledger.task_deps d JOIN below b ON d.depends_on = b.id
          ) SELECT array_agg(id) INTO targets FROM below;
          IF targets IS NOT NULL THEN
            PERFORM ledger.cancel_workflow_tasks(targets, 'BIZ_DEPENDENCY_NOT_SUCCEEDED: task ' || NEW.workflow_step || ' ended ' || NEW.state, 'ledger');
          END IF;
        END IF;
        RETURN NULL;
      END
      $fn$;
      CREATE TRIGGER workflow_task_finished AFTER UPDATE OF state ON ledger.tasks
        FOR EACH ROW WHEN (NEW.workflow_id IS NOT NULL AND OLD.state IS DISTINCT FROM NEW.state AND NEW.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'))
        EXECUTE FUNCTION ledger.workflow_task_finished();
    `,
  },
  {
    id: "0013_child_tasks",
    sql: `
      -- Child tasks: a running task's handler spawns tasks of its own
      -- (SpawnChildren), each keyed by (parent, step), and may park
      -- (RUNNING → WAITING, PARKED) until the children it awaits have ended:
      -- the transaction that ends the last one (or the first, for "any")
      -- makes it PENDING again (READY), to run its handler with their
      -- results. A task that ends other than SUCCEEDED cancels its
      -- unfinished children, and theirs.
      ALTER TABLE ledger.tasks ADD COLUMN parent_id uuid;
      -- A workflow task's place in its submit (UUIDv7 ids of one millisecond do not keep the order).
      ALTER TABLE ledger.tasks ADD COLUMN workflow_position integer;
      DO $do$
      DECLARE
        c record;
      BEGIN
        FOR c IN SELECT conname FROM pg_constraint WHERE conrelid = 'ledger.tasks'::regclass AND contype = 'c'
                   AND (pg_get_constraintdef(oid) LIKE '%workflow_step IS NULL%' OR pg_get_constraintdef(oid) LIKE '%waiting_on = 0%') LOOP
          EXECUTE format('ALTER TABLE ledger.tasks DROP CONSTRAINT %I', c.conname);
        END LOOP;
      END
      $do$;
      ALTER TABLE ledger.tasks
        ADD CONSTRAINT tasks_step_check CHECK ((workflow_id IS NULL AND parent_id IS NULL) = (workflow_step IS NULL)),
        ADD CONSTRAINT tasks_depends_on_check CHECK (workflow_id IS NOT NULL OR depends_on IS NULL);
      CREATE UNIQUE INDEX tasks_child_step ON ledger.tasks (parent_id, workflow_step) WHERE parent_id IS NOT NULL;
      -- An edge is a workflow dependency ('after') or a parked parent awaiting a child ('awaits').
      ALTER TABLE ledger.task_deps ADD COLUMN kind text NOT NULL DEFAULT 'after' CHECK (kind IN ('after', 'awaits'));
      ALTER TABLE ledger.history DROP CONSTRAINT history_kind_check,
        ADD CONSTRAINT history_kind_check CHECK (kind IN ('SUBMITTED', 'STARTED', 'SUCCEEDED', 'FAILED', 'RETRYING', 'RELEASED', 'CANCELLED', 'TIMED_OUT', 'READY', 'PARKED'));

      CREATE OR REPLACE FUNCTION ledger.check_task_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF TG_OP = 'INSERT' THEN
          IF NEW.state NOT IN ('PENDING', 'WAITING') OR NEW.sequence <> 1 OR NEW.attempts <> 0 THEN
            RAISE EXCEPTION 'a task starts PENDING or WAITING at sequence 1 with no attempt' USING ERRCODE = 'check_violation';
          END IF;
          RETURN NEW;
        END IF;
        IF OLD.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT') THEN
          RAISE EXCEPTION 'task % is % (finished) and cannot change', OLD.id, OLD.state USING ERRCODE = 'check_violation';
        END IF;
        IF NEW.id <> OLD.id OR NEW.capability <> OLD.capability
           OR (NEW.input <> OLD.input AND NOT (OLD.state = 'WAITING' AND NEW.state = 'PENDING' AND OLD.workflow_id IS NOT NULL))
           OR NEW.created_at <> OLD.created_at OR NEW.created_by <> OLD.created_by OR NEW.request_hash <> OLD.request_hash
           OR NEW.workflow_id IS DISTINCT FROM OLD.workflow_id OR NEW.depends_on IS DISTINCT FROM OLD.depends_on
           OR NEW.parent_id IS DISTINCT FROM OLD.parent_id THEN
          RAISE EXCEPTION 'task % changed an immutable column', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        IF OLD.state = 'PENDING' AND NEW.state = 'SUCCEEDED' AND OLD.lease_id IS NOT NULL THEN
          IF NEW.sequence <> OLD.sequence + 2 OR NEW.attempts <> OLD.attempts + 1 THEN
            RAISE EXCEPTION 'task % must start and succeed in two steps of the sequence', OLD.id USING ERRCODE = 'check_violation';
          END IF;
          RETURN NEW;
        END IF;
        IF NEW.state <> OLD.state AND NOT (
             (OLD.state = 'WAITING' AND NEW.state IN ('PENDING', 'CANCELLED'))
          OR (OLD.state = 'PENDING' AND NEW.state IN ('RUNNING', 'CANCELLED'))
          OR (OLD.state = 'RUNNING' AND NEW.state IN ('PENDING', 'WAITING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT'))) THEN
          RAISE EXCEPTION 'illegal task transition % -> %', OLD.state, NEW.state USING ERRCODE = 'check_violation';
        END IF;
        IF (NEW.state <> OLD.state AND NEW.sequence <> OLD.sequence + 1)
           OR (NEW.state = OLD.state AND NEW.sequence <> OLD.sequence) THEN
          RAISE EXCEPTION 'task % sequence must grow by one per transition', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
      END
      $fn$;

      -- A task finished. Its unfinished children are cancelled unless it
      -- SUCCEEDED; its parked parent counts one awaited child fewer (READY at
      -- none); and, in a workflow, the graph moves as migration 0012 says
      -- (the failure policy's cancels stay off while a cancel cascades).
      -- As in migration 0012, but the cascade flag comes back as it was
      -- (a cancel may run inside another's cascade).
      CREATE OR REPLACE FUNCTION ledger.cancel_workflow_tasks(ids uuid[], why text, by_actor text) RETURNS integer LANGUAGE plpgsql AS $fn$
      DECLARE
        n integer;
        before text := current_setting('taskmesh.workflow_cascade', true);
      BEGIN
        PERFORM set_config('taskmesh.workflow_cascade', 'off', true);
        WITH prior AS (
          SELECT id, state FROM ledger.tasks
          WHERE id = ANY(ids) AND state IN ('WAITING', 'PENDING', 'RUNNING') ORDER BY id FOR UPDATE
        ), cancelled AS (
          UPDATE ledger.tasks t SET state = 'CANCELLED', finished_at = now(), updated_at = now(), next_attempt_at = NULL, waiting_on = 0,
            lease_id = NULL, lease_worker_id = NULL, lease_acquired_at = NULL, lease_expires_at = NULL, sequence = t.sequence + 1
          FROM prior WHERE t.id = prior.id
          RETURNING t.id, t.sequence, prior.state AS from_state, t.attempts, t.worker_id, t.trace_id
        ), history AS (
          INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, worker_id, at, reason, trace_id, actor)
          SELECT id, sequence, 'CANCELLED', from_state, 'CANCELLED', attempts, worker_id, now(), left(why, 256), trace_id, by_actor FROM cancelled
        )
        SELECT count(*) INTO n FROM cancelled;
        PERFORM set_config('taskmesh.workflow_cascade', COALESCE(NULLIF(before, ''), 'on'), true);
        RETURN n;
      END
      $fn$;

      CREATE OR REPLACE FUNCTION ledger.workflow_task_finished() RETURNS trigger LANGUAGE plpgsql AS $fn$
      DECLARE
        targets uuid[];
        policy text;
        cascading boolean := current_setting('taskmesh.workflow_cascade', true) = 'off';
      BEGIN
        IF NEW.state <> 'SUCCEEDED' THEN
          SELECT array_agg(id) INTO targets FROM ledger.tasks WHERE parent_id = NEW.id AND state IN ('WAITING', 'PENDING', 'RUNNING');
          IF targets IS NOT NULL THEN
            PERFORM ledger.cancel_workflow_tasks(targets, 'BIZ_PARENT_ENDED: its parent ended ' || NEW.state, 'ledger');
          END IF;
        END IF;
        IF NEW.parent_id IS NOT NULL THEN
          -- Lock the parent first: a park in flight holds it until it commits, and the next statement sees its edges.
          PERFORM 1 FROM ledger.tasks WHERE id = NEW.parent_id FOR UPDATE;
          WITH resumed AS (
            UPDATE ledger.tasks t SET waiting_on = t.waiting_on - 1, updated_at = now(),
              state = CASE WHEN t.waiting_on = 1 THEN 'PENDING' ELSE t.state END,
              next_attempt_at = CASE WHEN t.waiting_on = 1 THEN now() END,
              sequence = CASE WHEN t.waiting_on = 1 THEN t.sequence + 1 ELSE t.sequence END
            FROM ledger.task_deps d
            WHERE t.id = NEW.parent_id AND t.state = 'WAITING' AND d.depends_on = NEW.id AND d.task_id = t.id AND d.kind = 'awaits'
            RETURNING t.id, t.state, t.sequence, t.attempts, t.trace_id, t.next_attempt_at
          )
          -- Its 'awaits' edges stay until it parks again (which replaces them): the completion that resumed it reads them to dispatch it.
          INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, at, trace_id, next_attempt_at, actor)
          SELECT id, sequence, 'READY', 'WAITING', 'PENDING', attempts, now(), trace_id, next_attempt_at, 'ledger' FROM resumed WHERE state = 'PENDING';
        END IF;
        IF NEW.workflow_id IS NULL THEN
          RETURN NULL;
        END IF;
        IF NEW.state = 'SUCCEEDED' THEN
          -- Lock the dependents first: a transaction finishing another of
          -- their dependencies holds them until it commits, and the next
          -- statement's snapshot then sees its count and its output.
          PERFORM 1 FROM ledger.tasks t JOIN ledger.task_deps d ON t.id = d.task_id
          WHERE d.depends_on = NEW.id AND d.kind = 'after' AND t.state = 'WAITING' ORDER BY t.id FOR UPDATE OF t;
          WITH changed AS (
            UPDATE ledger.tasks t SET waiting_on = t.waiting_on - 1, updated_at = now(),
              state = CASE WHEN t.waiting_on = 1 THEN 'PENDING' ELSE t.state END,
              next_attempt_at = CASE WHEN t.waiting_on = 1 THEN now() END,
              sequence = CASE WHEN t.waiting_on = 1 THEN t.sequence + 1 ELSE t.sequence END,
              input = CASE WHEN t.waiting_on > 1 OR position('"$ref"' IN t.input::text) = 0 THEN t.input
                           ELSE ledger.resolve_refs(t.input, (SELECT COALESCE(jsonb_object_agg(u.workflow_step, u.output), '{}'::jsonb)
                                                               FROM ledger.tasks u WHERE u.id = ANY(t.depends_on))) END
            FROM ledger.task_deps d
            WHERE d.depends_on = NEW.id AND d.kind = 'after' AND t.id = d.task_id AND t.state = 'WAITING'
            RETURNING t.id, t.state, t.sequence, t.trace_id, t.next_attempt_at
          )
          INSERT INTO ledger.history (task_id, sequence, kind, from_state, to_state, attempt, at, trace_id, next_attempt_at, actor)
          SELECT id, sequence, 'READY', 'WAITING', 'PENDING', 0, now(), trace_id, next_attempt_at, 'ledger' FROM changed WHERE state = 'PENDING';
          RETURN NULL;
        END IF;
        IF cascading THEN
          RETURN NULL;
        END IF;
        SELECT w.failure_policy INTO policy FROM ledger.workflows w WHERE w.id = NEW.workflow_id AND w.cancelled_at IS NULL;
        IF policy IS NULL THEN
          RETURN NULL;
        ELSIF policy = 'FAIL_FAST' THEN
          SELECT array_agg(id) INTO targets FROM ledger.tasks
          WHERE workflow_id = NEW.workflow_id AND state IN ('WAITING', 'PENDING', 'RUNNING');
          IF targets IS NOT NULL THEN
            PERFORM ledger.cancel_workflow_tasks(targets, 'BIZ_WORKFLOW_FAILED: task ' || NEW.workflow_step || ' ended ' || NEW.state, 'ledger');
          END IF;
        ELSE
          WITH RECURSIVE below(id) AS (
            SELECT task_id FROM ledger.task_deps WHERE depends_on = NEW.id AND kind = 'after'
            UNION
            SELECT d.task_id FROM ledger.task_deps d JOIN below b ON d.depends_on = b.id WHERE d.kind = 'after'
          ) SELECT array_agg(id) INTO targets FROM below;
          IF targets IS NOT NULL THEN
            PERFORM ledger.cancel_workflow_tasks(targets, 'BIZ_DEPENDENCY_NOT_SUCCEEDED: task ' || NEW.workflow_step || ' ended ' || NEW.state, 'ledger');
          END IF;
        END IF;
        RETURN NULL;
      END
      $fn$;
      DROP TRIGGER workflow_task_finished ON ledger.tasks;
      CREATE TRIGGER workflow_task_finished AFTER UPDATE OF state ON ledger.tasks
        FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state AND NEW.state IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'TIMED_OUT')
                           AND (NEW.workflow_id IS NOT NULL OR NEW.parent_id IS NOT NULL OR NEW.state <> 'SUCCEEDED'))
        EXECUTE FUNCTION ledger.workflow_task_finished();
    `,
  },
];
