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

-- What every insert and update of an order or a position did to the figures the ledger
-- audit compares, per user: the difference between the row's contribution after and
-- before. With the ledger and the audit log (both append-only) this makes the book's
-- figures a sum over append-only rows, so an audit can start from a checkpoint and add
-- only what came after it. Written by triggers, so no writer can skip it.
CREATE TABLE book_changes (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                   uuid NOT NULL,
    d_cost_executed           numeric NOT NULL DEFAULT 0,
    d_cost_rolled_back        numeric NOT NULL DEFAULT 0,
    d_n_executed              integer NOT NULL DEFAULT 0,
    d_n_rolled_back           integer NOT NULL DEFAULT 0,
    d_open_margin             numeric NOT NULL DEFAULT 0,
    d_n_live                  integer NOT NULL DEFAULT 0,
    d_n_positions_rolled_back integer NOT NULL DEFAULT 0
);

CREATE TRIGGER book_changes_append_only
    BEFORE UPDATE OR DELETE ON book_changes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER book_changes_no_truncate
    BEFORE TRUNCATE ON book_changes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- The contribution of one order (or position) row to the figures; NULL row: none.
CREATE FUNCTION _order_figures(o orders, OUT cost_executed numeric, OUT cost_rolled_back numeric,
                               OUT n_executed integer, OUT n_rolled_back integer)
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN o.status IN ('executed', 'rolled_back') THEN coalesce(o.total_cost, 0) ELSE 0 END,
           CASE WHEN o.status = 'rolled_back' THEN coalesce(o.total_cost, 0) ELSE 0 END,
           CASE WHEN o.status = 'executed' THEN 1 ELSE 0 END,
           CASE WHEN o.status = 'rolled_back' THEN 1 ELSE 0 END
$$;
CREATE FUNCTION _position_figures(p positions, OUT open_margin numeric, OUT n_live integer,
                                  OUT n_rolled_back integer)
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p.status = 'open' THEN coalesce(p.margin_used, 0) ELSE 0 END,
           CASE WHEN p.status IS NOT NULL AND p.status <> 'rolled_back' THEN 1 ELSE 0 END,
           CASE WHEN p.status = 'rolled_back' THEN 1 ELSE 0 END
$$;

CREATE FUNCTION orders_record_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    n record;
    o record;
BEGIN
    n := _order_figures(NEW);
    IF TG_OP = 'UPDATE' THEN
        o := _order_figures(OLD);
    ELSE
        o := _order_figures(NULL::orders);
    END IF;
    IF (n.cost_executed, n.cost_rolled_back, n.n_executed, n.n_rolled_back)
       IS DISTINCT FROM (o.cost_executed, o.cost_rolled_back, o.n_executed, o.n_rolled_back) THEN
        INSERT INTO book_changes (user_id, d_cost_executed, d_cost_rolled_back, d_n_executed, d_n_rolled_back)
        VALUES (NEW.user_id, n.cost_executed - o.cost_executed, n.cost_rolled_back - o.cost_rolled_back,
                n.n_executed - o.n_executed, n.n_rolled_back - o.n_rolled_back);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION positions_record_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    n record;
    o record;
BEGIN
    n := _position_figures(NEW);
    IF TG_OP = 'UPDATE' THEN
        o := _position_figures(OLD);
    ELSE
        o := _position_figures(NULL::positions);
    END IF;
    IF (n.open_margin, n.n_live, n.n_rolled_back) IS DISTINCT FROM (o.open_margin, o.n_live, o.n_rolled_back) THEN
        INSERT INTO book_changes (user_id, d_open_margin, d_n_live, d_n_positions_rolled_back)
        VALUES (NEW.user_id, n.open_margin - o.open_margin, n.n_live - o.n_live, n.n_rolled_back - o.n_rolled_back);
    END IF;
    RETURN NULL;
END
$$;

-- The rollback statement records its changes itself, in one row (a trigger call per row
-- cost a tenth of a rollback); it says so for the length of that statement only.
CREATE TRIGGER orders_record_change AFTER INSERT OR UPDATE ON orders
    FOR EACH ROW WHEN (current_setting('incident.book_changes', true) IS DISTINCT FROM 'written')
    EXECUTE FUNCTION orders_record_change();
CREATE TRIGGER positions_record_change AFTER INSERT OR UPDATE ON positions
    FOR EACH ROW WHEN (current_setting('incident.book_changes', true) IS DISTINCT FROM 'written')
    EXECUTE FUNCTION positions_record_change();

-- Checkpoints of the ledger audit: the per-user figures of the book up to a horizon (the
-- highest ledger, audit-log and book-change ids it counts), so that the next audit only
-- adds the rows above them. Derived data: old checkpoints are pruned, and
-- `audit --full` rebuilds one from the tables alone.
CREATE TABLE ledger_audit_checkpoints (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    ledger_max     bigint NOT NULL,
    audit_max      bigint NOT NULL,
    changes_max    bigint NOT NULL,
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
