-- Back to the audit of 0004/0005: id horizons under SHARE locks, and the change-log
-- triggers that a session can switch off. No business data is lost: book_changes rows
-- written by the statement triggers have the shape the old audit sums. What goes is
-- derived: the checkpoints taken at a snapshot (the old audit cannot use them; the next
-- audit rebuilds one from the tables) and the xid of each append-only row.
SET LOCAL ROLE incident_owner;

DROP FUNCTION ledger_audit_checkpoint(boolean);

-- The figures of the whole book from checkpoint p_checkpoint onwards: the checkpoint's
-- sums plus the ledger, audit-log and book-change rows above its ids (up to the given ids;
-- NULL: all). All three tables are append-only, so this is exact, and it costs what
-- changed since the checkpoint, not the history.
CREATE FUNCTION _audit_incremental(p_checkpoint bigint, p_ledger_to bigint, p_audit_to bigint,
                                   p_changes_to bigint)
RETURNS SETOF audit_figures
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    c ledger_audit_checkpoints;
BEGIN
    SELECT * INTO c FROM ledger_audit_checkpoints WHERE id = p_checkpoint;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger audit checkpoint % does not exist', p_checkpoint;
    END IF;

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
        WHERE t.id > c.ledger_max AND (p_ledger_to IS NULL OR t.id <= p_ledger_to)
        GROUP BY t.user_id
        UNION ALL
        SELECT a.user_id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, count(*)
        FROM order_audit_log a
        WHERE a.id > c.audit_max AND (p_audit_to IS NULL OR a.id <= p_audit_to)
          AND a.action = 'order_rolled_back'
        GROUP BY a.user_id
        UNION ALL
        SELECT b.user_id, 0, 0, 0, 0, 0, sum(b.d_cost_executed), sum(b.d_cost_rolled_back), sum(b.d_n_executed),
               sum(b.d_n_rolled_back), sum(b.d_open_margin), sum(b.d_n_live), sum(b.d_n_positions_rolled_back), 0
        FROM book_changes b
        WHERE b.id > c.changes_max AND (p_changes_to IS NULL OR b.id <= p_changes_to)
        GROUP BY b.user_id
        UNION ALL
        SELECT cu.user_id, cu.cash, cu.margin, cu.house, cu.taken, cu.given_back, cu.cost_executed,
               cu.cost_rolled_back, cu.n_executed, cu.n_rolled_back, cu.open_margin, cu.n_live,
               cu.n_positions_rolled_back, cu.n_rollback_rows
        FROM ledger_audit_checkpoint_users cu
        WHERE cu.checkpoint_id = c.id
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
-- STABLE: every statement sees the snapshot of the calling query.
CREATE OR REPLACE FUNCTION _ledger_audit(p_user_ids uuid[], p_full boolean DEFAULT false)
RETURNS TABLE (user_id uuid, check_name text, expected numeric, actual numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    v_checkpoint bigint;
    v_ledger_max bigint := 0;
BEGIN
    IF p_user_ids IS NULL AND NOT p_full THEN
        SELECT c.id, c.ledger_max INTO v_checkpoint, v_ledger_max
        FROM ledger_audit_checkpoints c ORDER BY c.id DESC LIMIT 1;
    END IF;

    RETURN QUERY
    WITH f AS (
        SELECT * FROM _audit_incremental(v_checkpoint, NULL, NULL, NULL) WHERE v_checkpoint IS NOT NULL
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
    -- A reversal moves exactly the original amount back between the same two accounts
    -- (reversals below the checkpoint were checked when it was taken).
    SELECT r.user_id, 'reversal_mirrors_original', o.amount, r.amount
    FROM ledger_transfers r
    LEFT JOIN ledger_transfers o ON o.id = r.reverses_id
    WHERE r.reverses_id IS NOT NULL AND r.id > coalesce(v_ledger_max, 0)
      AND (p_user_ids IS NULL OR r.user_id = ANY (p_user_ids))
      AND (o.id IS NULL OR r.amount <> o.amount OR r.debit_account <> o.credit_account
           OR r.credit_account <> o.debit_account OR r.user_id <> o.user_id
           OR r.order_id IS DISTINCT FROM o.order_id OR o.kind = 'reversal');
END
$$;


-- The horizon of a new checkpoint: waits for every write in flight on the audited tables
-- (SHARE locks, held until the calling transaction ends), then returns the highest ledger,
-- audit-log and book-change ids. Everything at or below them is committed.
CREATE FUNCTION audit_horizon(OUT ledger_max bigint, OUT audit_max bigint, OUT changes_max bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    -- The order the rollback statement takes its locks in, to avoid deadlocking with it.
    LOCK TABLE ledger_transfers, profiles, positions, orders, order_audit_log, book_changes IN SHARE MODE;
    SELECT coalesce(max(t.id), 0) INTO ledger_max FROM ledger_transfers t;
    SELECT coalesce(max(a.id), 0) INTO audit_max FROM order_audit_log a;
    SELECT coalesce(max(b.id), 0) INTO changes_max FROM book_changes b;
END
$$;

-- Records a checkpoint at a horizon from audit_horizon(), built from the previous one, or
-- with p_full from the tables alone; then the caller's snapshot must be the one taken
-- under the horizon's locks (see db::refresh_audit_checkpoint), so the tables hold
-- exactly what the horizon counts. Keeps the last three checkpoints.
CREATE FUNCTION ledger_audit_checkpoint(p_ledger_max bigint, p_audit_max bigint, p_changes_max bigint,
                                        p_full boolean)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_prev    ledger_audit_checkpoints;
    v_id      bigint;
    v_users   integer;
BEGIN
    IF p_ledger_max IS NULL OR p_audit_max IS NULL OR p_changes_max IS NULL OR p_full IS NULL THEN
        RETURN _refusal('invalid_argument', 'the horizon from audit_horizon() is required');
    END IF;
    SELECT * INTO v_prev FROM ledger_audit_checkpoints ORDER BY id DESC LIMIT 1;
    IF NOT p_full AND v_prev.id IS NULL THEN
        RETURN _refusal('no_checkpoint', 'there is no checkpoint to continue from; take a full one');
    END IF;
    IF NOT p_full AND (p_ledger_max < v_prev.ledger_max OR p_audit_max < v_prev.audit_max
                       OR p_changes_max < v_prev.changes_max) THEN
        RETURN _refusal('invalid_argument', 'the horizon is older than the latest checkpoint');
    END IF;

    INSERT INTO ledger_audit_checkpoints (ledger_max, audit_max, changes_max, full_recompute, users, operator)
    VALUES (p_ledger_max, p_audit_max, p_changes_max, p_full, 0, _operator())
    RETURNING id INTO v_id;
    INSERT INTO ledger_audit_checkpoint_users
    SELECT v_id, f.* FROM _audit_figures(NULL, p_ledger_max, p_audit_max) f WHERE p_full
    UNION ALL
    SELECT v_id, f.* FROM _audit_incremental(v_prev.id, p_ledger_max, p_audit_max, p_changes_max) f
    WHERE NOT p_full;
    GET DIAGNOSTICS v_users = ROW_COUNT;
    UPDATE ledger_audit_checkpoints SET users = v_users WHERE id = v_id;
    DELETE FROM ledger_audit_checkpoints
    WHERE id < (SELECT min(k.id) FROM (SELECT id FROM ledger_audit_checkpoints ORDER BY id DESC LIMIT 3) k);

    RETURN jsonb_build_object('success', true, 'checkpoint_id', v_id, 'full', p_full, 'users', v_users,
        'ledger_max', p_ledger_max, 'audit_max', p_audit_max, 'changes_max', p_changes_max,
        'elapsed_ms', round(extract(epoch FROM clock_timestamp() - v_started) * 1000, 1));
END
$$;

DROP FUNCTION _audit_incremental(bigint);
DROP FUNCTION _bad_reversals(uuid[], pg_snapshot, bigint[]);

REVOKE EXECUTE ON FUNCTION
    _audit_incremental(bigint, bigint, bigint, bigint), audit_horizon(),
    ledger_audit_checkpoint(bigint, bigint, bigint, boolean)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_horizon(), ledger_audit_checkpoint(bigint, bigint, bigint, boolean)
    TO incident_operator;

-- The change log's triggers as 0004 made them.
DROP TRIGGER book_changes_from_triggers_only ON book_changes;
DROP FUNCTION book_changes_from_triggers_only();
DROP TRIGGER orders_record_insert ON orders;
DROP TRIGGER orders_record_update ON orders;
DROP TRIGGER positions_record_insert ON positions;
DROP TRIGGER positions_record_update ON positions;

CREATE OR REPLACE FUNCTION orders_record_change() RETURNS trigger
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

CREATE OR REPLACE FUNCTION positions_record_change() RETURNS trigger
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

-- Checkpoints at a snapshot mean nothing to the old audit, but they are a record of who
-- audited when: they are archived whole (as JSON, with the operator and the login) in
-- ledger_audit_checkpoints_archive, which this undo creates and nothing ever drops, and
-- only then removed; the next audit rebuilds a checkpoint from the tables.
CREATE TABLE IF NOT EXISTS ledger_audit_checkpoints_archive (
    archived_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    archived_by text NOT NULL DEFAULT session_user,
    reason      text NOT NULL,
    checkpoint  jsonb NOT NULL
);
COMMENT ON TABLE ledger_audit_checkpoints_archive IS
    'checkpoints an undo of migration 10 removed from ledger_audit_checkpoints, kept whole';
REVOKE ALL ON ledger_audit_checkpoints_archive FROM PUBLIC;
GRANT SELECT ON ledger_audit_checkpoints_archive TO incident_viewer, incident_operator;
INSERT INTO ledger_audit_checkpoints_archive (reason, checkpoint)
SELECT 'undo of migration 10 (checkpoints at a snapshot)', to_jsonb(c)
FROM ledger_audit_checkpoints c
WHERE c.ledger_max IS NULL OR c.audit_max IS NULL OR c.changes_max IS NULL OR c.db_user IS NOT NULL
ORDER BY c.id;
DELETE FROM ledger_audit_checkpoints WHERE ledger_max IS NULL OR audit_max IS NULL OR changes_max IS NULL;
ALTER TABLE ledger_audit_checkpoints
    DROP COLUMN db_user,
    DROP COLUMN bad_reversals,
    DROP COLUMN based_on,
    DROP COLUMN snapshot,
    ALTER COLUMN ledger_max SET NOT NULL,
    ALTER COLUMN audit_max SET NOT NULL,
    ALTER COLUMN changes_max SET NOT NULL;

DROP INDEX book_changes_xid;
DROP INDEX order_audit_log_xid;
DROP INDEX ledger_transfers_xid;
ALTER TABLE book_changes DROP CONSTRAINT book_changes_xid_recorded, DROP COLUMN xid;
ALTER TABLE order_audit_log DROP CONSTRAINT order_audit_log_xid_recorded, DROP COLUMN xid;
ALTER TABLE ledger_transfers DROP CONSTRAINT ledger_transfers_xid_recorded, DROP COLUMN xid;

RESET ROLE;
