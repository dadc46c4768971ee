-- The audit log of rollbacks. Insert-only: UPDATE, DELETE and TRUNCATE are refused.
--   order_rolled_back  one row per order a rollback call undid (exactly one per order, ever)
--   rollback_failed    a rollback the client could not complete (error after retries)
--   postcheck_failed   a post-check that did not match its baseline
-- Rows of one rollback call share rollback_id; rows of one batch share batch_id.
SET LOCAL ROLE incident_owner;

CREATE DOMAIN audit_action AS text CHECK (VALUE IN ('order_rolled_back', 'rollback_failed', 'postcheck_failed'));

CREATE TABLE order_audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id       uuid NOT NULL,
    user_id        uuid NOT NULL,
    action         audit_action NOT NULL,
    rollback_id    uuid NOT NULL,
    batch_id       uuid,
    mode           text CHECK (mode IN ('single', 'transaction')),
    transaction_id uuid,
    operator       key_text NOT NULL,
    db_user        text NOT NULL DEFAULT session_user,
    -- how long the rollback call took, measured with clock_timestamp() inside it
    duration_us    bigint,
    is_drill       boolean NOT NULL DEFAULT false,
    details        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_rollback_has_mode CHECK (
        action <> 'order_rolled_back' OR (mode IS NOT NULL AND duration_us >= 0))
);

-- An order is rolled back at most once, and its rollback has exactly one row.
CREATE UNIQUE INDEX order_audit_one_rollback_per_order ON order_audit_log (order_id)
    WHERE action = 'order_rolled_back';
CREATE INDEX idx_order_audit_created_at ON order_audit_log (created_at);

CREATE TRIGGER order_audit_log_append_only
    BEFORE UPDATE OR DELETE ON order_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER order_audit_log_no_truncate
    BEFORE TRUNCATE ON order_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Dashboards LISTEN on order_audit. One notification per statement (not per row), and a
-- session doing a batch may set incident.defer_notify = on and notify once in a while
-- itself: every NOTIFY takes a database-wide lock at commit.
CREATE FUNCTION order_audit_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM pg_notify('order_audit', '');
    RETURN NULL;
END
$$;

-- The WHEN clause skips even the function call for a deferring session.
CREATE TRIGGER order_audit_log_notify
    AFTER INSERT ON order_audit_log
    FOR EACH STATEMENT
    WHEN (coalesce(current_setting('incident.defer_notify', true), '') <> 'on')
    EXECUTE FUNCTION order_audit_notify();

-- Checkpoints of the ledger audit: the per-user figures of the book up to a horizon, so
-- that the next audit only adds what came after (ledger and audit rows above the ids,
-- orders and positions whose change_seq is above change_max). Derived data: old
-- checkpoints are pruned, and `audit --full` rebuilds one from nothing.
CREATE TABLE ledger_audit_checkpoints (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    ledger_max     bigint NOT NULL,
    audit_max      bigint NOT NULL,
    change_max     bigint NOT NULL,
    full_recompute boolean NOT NULL,
    users          integer NOT NULL,
    operator       text NOT NULL
);

CREATE TABLE ledger_audit_checkpoint_users (
    checkpoint_id           bigint NOT NULL REFERENCES ledger_audit_checkpoints (id) ON DELETE CASCADE,
    user_id                 uuid NOT NULL,
    cash                    numeric NOT NULL,
    margin                  numeric NOT NULL,
    house                   numeric NOT NULL,
    taken                   numeric NOT NULL,
    given_back              numeric NOT NULL,
    cost_executed           numeric NOT NULL,
    cost_rolled_back        numeric NOT NULL,
    n_executed              bigint NOT NULL,
    n_rolled_back           bigint NOT NULL,
    open_margin             numeric NOT NULL,
    n_live                  bigint NOT NULL,
    n_positions_rolled_back bigint NOT NULL,
    n_rollback_rows         bigint NOT NULL,
    PRIMARY KEY (checkpoint_id, user_id)
);

RESET ROLE;
