-- The audit without locks, and a change log nobody can switch off (issue 8, findings 3, 4).
--
-- A checkpoint was "every row up to these ids", which is only true once the writes in
-- flight have ended: audit_horizon() waited for them with SHARE locks on six tables, taken
-- in another order than execute_order_atomic takes its own, and deadlocked live trading.
-- And the ids came from the caller, so ledger_audit_checkpoint(9e15, 9e15, 9e15, true)
-- froze the incremental audit.
--
-- Now a checkpoint is "everything one snapshot sees" (MVCC, no lock at all): its figures
-- and pg_current_snapshot() come from one statement, taken by the server. The append-only
-- tables record the transaction that wrote each row (xid), and the incremental audit adds
-- the rows visible to it that the checkpoint's snapshot did not see. Rows older than this
-- migration have no xid: they were committed before it (ALTER TABLE waited for their
-- writers), so every checkpoint taken from now on sees them.
--
-- The triggers that fill book_changes skipped themselves when a session had SET
-- incident.book_changes = 'written' (the rollback statement wrote its own row): any role
-- could set it, execute an order unrecorded, and the next checkpoint carried the hole
-- forward. They now always run, once per statement (transition tables, not once per row),
-- and book_changes keeps only what they write: a row inserted by anything else (the
-- rollback statement of 0005 still writes one) is dropped, so nothing is counted twice.
SET LOCAL ROLE incident_owner;

---------------------------------------------------------------------------------------------
-- Which transaction wrote each append-only row
---------------------------------------------------------------------------------------------

-- ADD COLUMN without a default does not rewrite the table; the default applies to new rows
-- only, and the NOT VALID check makes every new row carry one without scanning the old.
ALTER TABLE ledger_transfers ADD COLUMN xid xid8;
ALTER TABLE ledger_transfers ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
ALTER TABLE ledger_transfers ADD CONSTRAINT ledger_transfers_xid_recorded CHECK (xid IS NOT NULL) NOT VALID;
ALTER TABLE order_audit_log ADD COLUMN xid xid8;
ALTER TABLE order_audit_log ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
ALTER TABLE order_audit_log ADD CONSTRAINT order_audit_log_xid_recorded CHECK (xid IS NOT NULL) NOT VALID;
ALTER TABLE book_changes ADD COLUMN xid xid8;
ALTER TABLE book_changes ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
ALTER TABLE book_changes ADD CONSTRAINT book_changes_xid_recorded CHECK (xid IS NOT NULL) NOT VALID;

-- The rows a checkpoint did not see were written by transactions at or above its snapshot's
-- xmin. BRIN, not btree: an append-only table is in xid order on disk, and a BRIN index adds
-- no entry per row (the rollback path pays a summary lookup, not an index insertion; the
-- tail of the table, not yet summarized, is always read). xid8 has no BRIN operator class,
-- so the index is on the number.
CREATE INDEX ledger_transfers_xid ON ledger_transfers USING brin (((xid::text)::bigint))
    WITH (autosummarize = on);
CREATE INDEX order_audit_log_xid ON order_audit_log USING brin (((xid::text)::bigint))
    WITH (autosummarize = on);
CREATE INDEX book_changes_xid ON book_changes USING brin (((xid::text)::bigint))
    WITH (autosummarize = on);

---------------------------------------------------------------------------------------------
-- Checkpoints at a snapshot
---------------------------------------------------------------------------------------------

-- The id horizons stay for the checkpoints taken before (NULL from now on; the audit no
-- longer uses those). who took it: the operator name and, apart, the login.
ALTER TABLE ledger_audit_checkpoints
    ALTER COLUMN ledger_max DROP NOT NULL,
    ALTER COLUMN audit_max DROP NOT NULL,
    ALTER COLUMN changes_max DROP NOT NULL,
    ADD COLUMN snapshot pg_snapshot,
    ADD COLUMN based_on bigint,
    ADD COLUMN bad_reversals bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN db_user text;
ALTER TABLE ledger_audit_checkpoints ALTER COLUMN db_user SET DEFAULT session_user;
COMMENT ON COLUMN ledger_audit_checkpoints.snapshot IS
    'the snapshot the figures were computed in: the checkpoint counts exactly the rows visible in it';
COMMENT ON COLUMN ledger_audit_checkpoints.bad_reversals IS
    'ledger ids of reversals that do not mirror their original, carried forward so that a checkpoint never hides one';

---------------------------------------------------------------------------------------------
-- The change log: always written, once per statement
---------------------------------------------------------------------------------------------

DROP TRIGGER orders_record_change ON orders;
DROP TRIGGER positions_record_change ON positions;

-- What a statement did to the figures of orders, per user: its new rows' contribution minus
-- its old rows'. Statements that change no figure (updated_at only) write nothing.
CREATE OR REPLACE FUNCTION orders_record_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO book_changes (user_id, d_cost_executed, d_cost_rolled_back, d_n_executed, d_n_rolled_back)
        SELECT d.user_id, sum(d.cost_executed), sum(d.cost_rolled_back), sum(d.n_executed), sum(d.n_rolled_back)
        FROM (SELECT n.user_id,
                     CASE WHEN n.status IN ('executed', 'rolled_back') THEN coalesce(n.total_cost, 0) ELSE 0 END
                         AS cost_executed,
                     CASE WHEN n.status = 'rolled_back' THEN coalesce(n.total_cost, 0) ELSE 0 END AS cost_rolled_back,
                     CASE WHEN n.status = 'executed' THEN 1 ELSE 0 END AS n_executed,
                     CASE WHEN n.status = 'rolled_back' THEN 1 ELSE 0 END AS n_rolled_back
              FROM new_rows n) d
        GROUP BY d.user_id
        HAVING sum(d.cost_executed) <> 0 OR sum(d.cost_rolled_back) <> 0 OR sum(d.n_executed) <> 0
            OR sum(d.n_rolled_back) <> 0;
    ELSE
        INSERT INTO book_changes (user_id, d_cost_executed, d_cost_rolled_back, d_n_executed, d_n_rolled_back)
        SELECT d.user_id, sum(d.cost_executed), sum(d.cost_rolled_back), sum(d.n_executed), sum(d.n_rolled_back)
        FROM (SELECT r.user_id,
                     r.sign * CASE WHEN r.status IN ('executed', 'rolled_back') THEN coalesce(r.total_cost, 0) ELSE 0 END
                         AS cost_executed,
                     r.sign * CASE WHEN r.status = 'rolled_back' THEN coalesce(r.total_cost, 0) ELSE 0 END
                         AS cost_rolled_back,
                     r.sign * CASE WHEN r.status = 'executed' THEN 1 ELSE 0 END AS n_executed,
                     r.sign * CASE WHEN r.status = 'rolled_back' THEN 1 ELSE 0 END AS n_rolled_back
              FROM (SELECT n.user_id, n.status, n.total_cost, 1 AS sign FROM new_rows n
                    UNION ALL
                    SELECT o.user_id, o.status, o.total_cost, -1 FROM old_rows o) r) d
        GROUP BY d.user_id
        HAVING sum(d.cost_executed) <> 0 OR sum(d.cost_rolled_back) <> 0 OR sum(d.n_executed) <> 0
            OR sum(d.n_rolled_back) <> 0;
    END IF;
    RETURN NULL;
END
$$;

-- The same for positions: open margin, live and rolled-back positions.
CREATE OR REPLACE FUNCTION positions_record_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO book_changes (user_id, d_open_margin, d_n_live, d_n_positions_rolled_back)
        SELECT d.user_id, sum(d.open_margin), sum(d.n_live), sum(d.n_rolled_back)
        FROM (SELECT n.user_id,
                     CASE WHEN n.status = 'open' THEN coalesce(n.margin_used, 0) ELSE 0 END AS open_margin,
                     CASE WHEN n.status <> 'rolled_back' THEN 1 ELSE 0 END AS n_live,
                     CASE WHEN n.status = 'rolled_back' THEN 1 ELSE 0 END AS n_rolled_back
              FROM new_rows n) d
        GROUP BY d.user_id
        HAVING sum(d.open_margin) <> 0 OR sum(d.n_live) <> 0 OR sum(d.n_rolled_back) <> 0;
    ELSE
        INSERT INTO book_changes (user_id, d_open_margin, d_n_live, d_n_positions_rolled_back)
        SELECT d.user_id, sum(d.open_margin), sum(d.n_live), sum(d.n_rolled_back)
        FROM (SELECT r.user_id,
                     r.sign * CASE WHEN r.status = 'open' THEN coalesce(r.margin_used, 0) ELSE 0 END AS open_margin,
                     r.sign * CASE WHEN r.status <> 'rolled_back' THEN 1 ELSE 0 END AS n_live,
                     r.sign * CASE WHEN r.status = 'rolled_back' THEN 1 ELSE 0 END AS n_rolled_back
              FROM (SELECT n.user_id, n.status, n.margin_used, 1 AS sign FROM new_rows n
                    UNION ALL
                    SELECT o.user_id, o.status, o.margin_used, -1 FROM old_rows o) r) d
        GROUP BY d.user_id
        HAVING sum(d.open_margin) <> 0 OR sum(d.n_live) <> 0 OR sum(d.n_rolled_back) <> 0;
    END IF;
    RETURN NULL;
END
$$;

-- No WHEN clause: nothing a session sets decides whether a change is recorded. A trigger
-- with transition tables handles one event, hence two per table.
CREATE TRIGGER orders_record_insert AFTER INSERT ON orders
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_record_change();
CREATE TRIGGER orders_record_update AFTER UPDATE ON orders
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION orders_record_change();
CREATE TRIGGER positions_record_insert AFTER INSERT ON positions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION positions_record_change();
CREATE TRIGGER positions_record_update AFTER UPDATE ON positions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION positions_record_change();

-- book_changes holds what the triggers above write (from inside a trigger, depth 1) and
-- nothing else: a row inserted directly would count a change twice, or invent one.
CREATE FUNCTION book_changes_from_triggers_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN NULL;
END
$$;
CREATE TRIGGER book_changes_from_triggers_only BEFORE INSERT ON book_changes
    FOR EACH ROW WHEN (pg_trigger_depth() = 0)
    EXECUTE FUNCTION book_changes_from_triggers_only();

---------------------------------------------------------------------------------------------
-- The audit
---------------------------------------------------------------------------------------------

-- Reversals that do not move exactly the original amount back between the same two
-- accounts: of some users (NULL: all), among the rows p_since did not see (NULL: every
-- row), plus the rows p_also names (the ones a checkpoint carries forward).
CREATE FUNCTION _bad_reversals(p_user_ids uuid[], p_since pg_snapshot, p_also bigint[])
RETURNS TABLE (id bigint, user_id uuid, expected numeric, actual numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_from bigint := (pg_snapshot_xmin(p_since)::text)::bigint;
BEGIN
    RETURN QUERY
    SELECT r.id, r.user_id, o.amount::numeric, r.amount::numeric
    FROM ledger_transfers r
    LEFT JOIN ledger_transfers o ON o.id = r.reverses_id
    WHERE r.reverses_id IS NOT NULL
      AND (p_user_ids IS NULL OR r.user_id = ANY (p_user_ids))
      AND (p_since IS NULL
           OR ((r.xid::text)::bigint >= v_from AND NOT pg_visible_in_snapshot(r.xid, p_since))
           OR r.id = ANY (p_also))
      AND (o.id IS NULL OR r.amount <> o.amount OR r.debit_account <> o.credit_account
           OR r.credit_account <> o.debit_account OR r.user_id <> o.user_id
           OR r.order_id IS DISTINCT FROM o.order_id OR o.kind = 'reversal');
END
$$;

-- The figures of the whole book from checkpoint p_checkpoint onwards: its sums plus the
-- ledger, audit-log and book-change rows visible now that its snapshot did not see. All
-- three tables are append-only, so this is exact, and it reads what changed since.
CREATE FUNCTION _audit_incremental(p_checkpoint bigint)
RETURNS SETOF audit_figures
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_snap pg_snapshot;
    v_from bigint;
BEGIN
    SELECT c.snapshot INTO v_snap FROM ledger_audit_checkpoints c WHERE c.id = p_checkpoint;
    IF v_snap IS NULL THEN
        RAISE EXCEPTION 'ledger audit checkpoint % does not exist or has no snapshot', p_checkpoint;
    END IF;
    -- Every transaction below the snapshot's xmin had ended when it was taken: its rows are
    -- in the checkpoint (or were never committed). The BRIN indexes find the rest.
    v_from := (pg_snapshot_xmin(v_snap)::text)::bigint;

    RETURN QUERY
    WITH deltas AS (
        SELECT t.user_id,
               sum(CASE WHEN t.credit_account = 'user_cash' THEN t.amount
                        WHEN t.debit_account = 'user_cash' THEN -t.amount ELSE 0 END) AS cash,
               sum(CASE WHEN t.credit_account = 'user_margin' THEN t.amount
                        WHEN t.debit_account = 'user_margin' THEN -t.amount ELSE 0 END) AS margin,
               sum(CASE WHEN t.credit_account IN ('house_clearing', 'house_commission') THEN t.amount
                        WHEN t.debit_account IN ('house_clearing', 'house_commission') THEN -t.amount
                        ELSE 0 END) AS house,
               coalesce(sum(t.amount) FILTER (WHERE t.kind IN ('margin_lock', 'commission')), 0) AS taken,
               coalesce(sum(t.amount) FILTER (WHERE t.kind = 'reversal'), 0) AS given_back,
               0::numeric AS cost_executed, 0::numeric AS cost_rolled_back, 0::bigint AS n_executed,
               0::bigint AS n_rolled_back, 0::numeric AS open_margin, 0::bigint AS n_live,
               0::bigint AS n_positions_rolled_back, 0::bigint AS n_rollback_rows
        FROM ledger_transfers t
        WHERE (t.xid::text)::bigint >= v_from AND NOT pg_visible_in_snapshot(t.xid, v_snap)
        GROUP BY t.user_id
        UNION ALL
        SELECT a.user_id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, count(*)
        FROM order_audit_log a
        WHERE (a.xid::text)::bigint >= v_from AND NOT pg_visible_in_snapshot(a.xid, v_snap)
          AND a.action = 'order_rolled_back'
        GROUP BY a.user_id
        UNION ALL
        SELECT b.user_id, 0, 0, 0, 0, 0, sum(b.d_cost_executed), sum(b.d_cost_rolled_back), sum(b.d_n_executed),
               sum(b.d_n_rolled_back), sum(b.d_open_margin), sum(b.d_n_live), sum(b.d_n_positions_rolled_back), 0
        FROM book_changes b
        WHERE (b.xid::text)::bigint >= v_from AND NOT pg_visible_in_snapshot(b.xid, v_snap)
        GROUP BY b.user_id
        UNION ALL
        SELECT cu.user_id, cu.cash, cu.margin, cu.house, cu.taken, cu.given_back, cu.cost_executed,
               cu.cost_rolled_back, cu.n_executed, cu.n_rolled_back, cu.open_margin, cu.n_live,
               cu.n_positions_rolled_back, cu.n_rollback_rows
        FROM ledger_audit_checkpoint_users cu
        WHERE cu.checkpoint_id = p_checkpoint
    )
    SELECT d.user_id, sum(d.cash), sum(d.margin), sum(d.house), sum(d.taken), sum(d.given_back),
           sum(d.cost_executed), sum(d.cost_rolled_back), sum(d.n_executed)::bigint, sum(d.n_rolled_back)::bigint,
           sum(d.open_margin), sum(d.n_live)::bigint, sum(d.n_positions_rolled_back)::bigint,
           sum(d.n_rollback_rows)::bigint
    FROM deltas d
    GROUP BY d.user_id;
END
$$;

-- Every invariant violation of the given users (NULL: the whole book). The whole book is
-- audited from the latest checkpoint when there is one (p_full: from the tables alone).
-- STABLE: every statement sees the snapshot of the calling query, the checkpoint included.
CREATE OR REPLACE FUNCTION _ledger_audit(p_user_ids uuid[], p_full boolean DEFAULT false)
RETURNS TABLE (user_id uuid, check_name text, expected numeric, actual numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_checkpoint bigint;
    v_snap       pg_snapshot;
    v_bad        bigint[];
BEGIN
    IF p_user_ids IS NULL AND NOT p_full THEN
        SELECT c.id, c.snapshot, c.bad_reversals INTO v_checkpoint, v_snap, v_bad
        FROM ledger_audit_checkpoints c WHERE c.snapshot IS NOT NULL ORDER BY c.id DESC LIMIT 1;
    END IF;

    RETURN QUERY
    WITH f AS (
        SELECT * FROM _audit_incremental(v_checkpoint) WHERE v_checkpoint IS NOT NULL
        UNION ALL
        SELECT * FROM _audit_figures(p_user_ids, NULL, NULL) WHERE v_checkpoint IS NULL
    ), u AS (
        SELECT pr.id, pr.balance, pr.margin_used,
               coalesce(f.cash, 0) AS ledger_cash, coalesce(f.margin, 0) AS ledger_margin,
               coalesce(f.taken, 0) AS taken, coalesce(f.given_back, 0) AS given_back,
               coalesce(f.cost_executed, 0) AS cost_executed, coalesce(f.cost_rolled_back, 0) AS cost_rolled_back,
               coalesce(f.n_executed, 0) AS n_executed, coalesce(f.n_rolled_back, 0) AS n_rolled_back,
               coalesce(f.open_margin, 0) AS open_margin, coalesce(f.n_live, 0) AS n_live,
               coalesce(f.n_positions_rolled_back, 0) AS n_positions_rolled_back,
               coalesce(f.n_rollback_rows, 0) AS n_rollback_rows
        FROM profiles pr
        LEFT JOIN f ON f.user_id = pr.id
        WHERE p_user_ids IS NULL OR pr.id = ANY (p_user_ids)
    ), net AS (
        SELECT (SELECT coalesce(sum(pr.balance + pr.margin_used), 0) FROM profiles pr)
               + (SELECT coalesce(sum(f.house), 0) FROM f) AS total
    )
    SELECT u.id, c.check_name, c.expected, c.actual
    FROM u
    CROSS JOIN LATERAL (VALUES
        ('balance_matches_ledger', u.ledger_cash, u.balance),
        ('margin_matches_ledger', u.ledger_margin, u.margin_used),
        ('margin_matches_open_positions', u.open_margin, u.margin_used),
        ('execution_transfers_match_orders', u.cost_executed, u.taken),
        ('reversals_match_rolled_back_orders', u.cost_rolled_back, u.given_back),
        ('executed_orders_have_positions', u.n_executed::numeric, u.n_live::numeric),
        ('rolled_back_orders_closed_positions', u.n_rolled_back::numeric, u.n_positions_rolled_back::numeric),
        ('rolled_back_orders_have_one_audit_row', u.n_rolled_back::numeric, u.n_rollback_rows::numeric)
    ) AS c (check_name, expected, actual)
    WHERE c.expected IS DISTINCT FROM c.actual
    UNION ALL
    -- Figures of a user with no account (a transfer or order without a profile).
    SELECT f.user_id, 'figures_without_account', 0::numeric, 1::numeric
    FROM f
    WHERE p_user_ids IS NULL AND NOT EXISTS (SELECT 1 FROM profiles pr WHERE pr.id = f.user_id)
    UNION ALL
    -- Every account together nets to zero: the users' caches plus the house accounts.
    SELECT NULL::uuid, 'ledger_nets_to_zero', 0::numeric, net.total
    FROM net
    WHERE p_user_ids IS NULL AND net.total <> 0
    UNION ALL
    -- A reversal moves exactly the original amount back between the same two accounts:
    -- those the checkpoint did not see, and those it found wrong.
    SELECT b.user_id, 'reversal_mirrors_original', b.expected, b.actual
    FROM _bad_reversals(p_user_ids, v_snap, v_bad) b;
END
$$;

-- Records a checkpoint: the figures of the book in this statement's snapshot, built from
-- the latest checkpoint (or, with p_full or when there is none, from the tables alone),
-- together with that snapshot. The server takes the horizon; nothing is locked, so trading
-- goes on, and what commits meanwhile is simply after the checkpoint. Keeps the last three.
CREATE FUNCTION ledger_audit_checkpoint(p_full boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_id      bigint;
    v_full    boolean;
    v_users   integer;
BEGIN
    IF p_full IS NULL THEN
        RETURN _refusal('invalid_argument', 'say whether the checkpoint is full');
    END IF;
    -- The snapshot does not list this transaction's own writes as visible, though the
    -- figures would count them: a checkpoint is taken in a transaction of its own.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RETURN _refusal('not_alone', 'take a checkpoint in a transaction that has written nothing');
    END IF;

    -- One statement, so one snapshot: the previous checkpoint, the figures and the snapshot
    -- recorded with them agree, whatever commits while it runs.
    WITH prev AS (
        SELECT c.id, c.snapshot, c.bad_reversals FROM ledger_audit_checkpoints c
        WHERE c.snapshot IS NOT NULL AND NOT p_full
        ORDER BY c.id DESC LIMIT 1
    ), figures AS (
        SELECT f.* FROM prev CROSS JOIN LATERAL _audit_incremental(prev.id) f
        UNION ALL
        SELECT f.* FROM _audit_figures(NULL, NULL, NULL) f WHERE NOT EXISTS (SELECT 1 FROM prev)
    ), bad AS (
        SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}') AS ids
        FROM (SELECT r.id FROM prev CROSS JOIN LATERAL _bad_reversals(NULL, prev.snapshot, prev.bad_reversals) r
              UNION ALL
              SELECT r.id FROM _bad_reversals(NULL, NULL, NULL) r WHERE NOT EXISTS (SELECT 1 FROM prev)) b
    ), cp AS (
        INSERT INTO ledger_audit_checkpoints (snapshot, based_on, full_recompute, bad_reversals, users,
                                              operator, db_user)
        SELECT pg_current_snapshot(), (SELECT prev.id FROM prev), NOT EXISTS (SELECT 1 FROM prev), bad.ids,
               (SELECT count(*) FROM figures)::integer, _operator(), session_user
        FROM bad
        RETURNING id, full_recompute, users
    ), saved AS (
        INSERT INTO ledger_audit_checkpoint_users
        SELECT cp.id, f.* FROM cp CROSS JOIN figures f
    )
    SELECT cp.id, cp.full_recompute, cp.users INTO v_id, v_full, v_users FROM cp;

    -- Pruning never waits: a checkpoint another call is deleting is left to it.
    DELETE FROM ledger_audit_checkpoints d
    WHERE d.id IN (SELECT c.id FROM ledger_audit_checkpoints c
                   WHERE c.id < (SELECT min(k.id) FROM (SELECT id FROM ledger_audit_checkpoints
                                                        ORDER BY id DESC LIMIT 3) k)
                   FOR UPDATE SKIP LOCKED);

    RETURN jsonb_build_object('success', true, 'checkpoint_id', v_id, 'full', v_full, 'users', v_users,
        'elapsed_ms', round(extract(epoch FROM clock_timestamp() - v_started) * 1000, 1));
END
$$;

DROP FUNCTION ledger_audit_checkpoint(bigint, bigint, bigint, boolean);
DROP FUNCTION audit_horizon();
DROP FUNCTION _audit_incremental(bigint, bigint, bigint, bigint);

REVOKE EXECUTE ON FUNCTION
    book_changes_from_triggers_only(), _bad_reversals(uuid[], pg_snapshot, bigint[]), _audit_incremental(bigint),
    ledger_audit_checkpoint(boolean)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_audit_checkpoint(boolean) TO incident_operator;

RESET ROLE;
