-- The functions of the SQL contract, and the internal helpers they share.
--
-- The money paths run with plan_cache_mode = force_generic_plan: their statements are
-- planned once per session. Left to choose, PostgreSQL kept re-planning the rollback's
-- one big statement (and re-inlining its helpers) on every call, which cost more than
-- executing it (measured: 857 -> 2163 rollbacks/s on one connection).
--
-- Rules every money path here follows:
--   * a function is one transaction: no COMMIT/ROLLBACK inside, no EXCEPTION WHEN OTHERS;
--     serialization failures, deadlocks and lock timeouts raise so the client retries;
--   * locks are taken in one fixed order: order rows by id, then the profile, then positions;
--   * every UPDATE is guarded by the status it expects and its row count is checked;
--   * a rollback reverses the execution's ledger transfers, it never recomputes amounts;
--   * business refusals return {success:false, error_code} and change nothing;
--   * money leaves as JSON strings ("123.45000000"), never as floats.
SET LOCAL ROLE incident_owner;

-- Future functions are not executable by everyone either.
ALTER DEFAULT PRIVILEGES FOR ROLE incident_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

---------------------------------------------------------------------------------------------
-- Internal helpers
--
-- Only the owner may execute them (EXECUTE is revoked from PUBLIC), and they only run
-- inside the SECURITY DEFINER functions below, under those functions' search_path. They
-- carry no SET clause of their own so that the planner can inline them: a SET makes every
-- call save and restore the setting, which costs more than the helper itself.
---------------------------------------------------------------------------------------------

CREATE FUNCTION _refusal(p_code text, p_message text, p_extra jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('success', false, 'error_code', p_code, 'message', p_message) || p_extra
$$;

CREATE FUNCTION _money(p_amount numeric)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(round(p_amount, 8)::text)
$$;

-- The name recorded on audit rows: set per connection by the client, else the login role.
CREATE FUNCTION _operator()
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT left(coalesce(nullif(btrim(current_setting('incident.operator', true)), ''), session_user::text), 200)
$$;

-- The batch a session is running, if it said so (a malformed value is ignored).
CREATE FUNCTION _batch_id()
RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN current_setting('incident.batch_id', true)
                     ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                THEN current_setting('incident.batch_id', true)::uuid END
$$;

-- NULL when the reason is acceptable, else the refusal.
CREATE FUNCTION _reason_refusal(p_reason text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_reason IS NULL OR p_reason !~ '[^[:space:]]' THEN
            _refusal('invalid_reason', 'a rollback reason is required')
        WHEN length(p_reason) > 1000 THEN
            _refusal('invalid_reason', 'the rollback reason is longer than 1000 characters',
                     jsonb_build_object('length', length(p_reason), 'max_length', 1000))
    END
$$;

-- What reversing the execution transfers of these orders gives back to the user:
-- cash_back into user_cash and margin_back out of user_margin.
CREATE FUNCTION _execution_totals(p_user_id uuid, p_order_ids uuid[],
    OUT cash_back numeric, OUT margin_back numeric, OUT transfers integer, OUT reversed integer)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(CASE WHEN t.debit_account = 'user_cash' THEN t.amount
                             WHEN t.credit_account = 'user_cash' THEN -t.amount END), 0),
           coalesce(sum(CASE WHEN t.credit_account = 'user_margin' THEN t.amount
                             WHEN t.debit_account = 'user_margin' THEN -t.amount END), 0),
           count(*)::integer,
           count(r.id)::integer
    FROM ledger_transfers t
    LEFT JOIN ledger_transfers r ON r.reverses_id = t.id
    WHERE t.order_id = ANY (p_order_ids) AND t.reverses_id IS NULL AND t.user_id = p_user_id
$$;

-- The figures the ledger audit compares, per user. Each is a sum or a count over one
-- table, so the whole book is read in one pass per table.
CREATE TYPE audit_figures AS (
    user_id                 uuid,
    cash                    numeric,  -- ledger: the user's cash account
    margin                  numeric,  -- ledger: the user's margin account
    house                   numeric,  -- ledger: what the user's transfers put in house accounts
    taken                   numeric,  -- ledger: margin and commission taken by executions
    given_back              numeric,  -- ledger: reversals
    cost_executed           numeric,  -- orders: total cost of executed and rolled-back orders
    cost_rolled_back        numeric,  -- orders: total cost of rolled-back orders
    n_executed              bigint,
    n_rolled_back           bigint,
    open_margin             numeric,  -- positions: margin of open positions
    n_live                  bigint,   -- positions: open or closed
    n_positions_rolled_back bigint,
    n_rollback_rows         bigint    -- audit log: order_rolled_back rows
);

-- Figures computed from the tables, for some users (NULL: all), counting ledger and audit
-- rows up to the given ids (NULL: all). Custom plans: per-user calls use the indexes,
-- whole-book calls scan each table once.
CREATE FUNCTION _audit_figures(p_user_ids uuid[], p_ledger_max bigint, p_audit_max bigint)
RETURNS SETOF audit_figures
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY
    WITH l AS (
        SELECT t.user_id,
               sum(CASE WHEN t.credit_account = 'user_cash' THEN t.amount
                        WHEN t.debit_account = 'user_cash' THEN -t.amount ELSE 0 END) AS cash,
               sum(CASE WHEN t.credit_account = 'user_margin' THEN t.amount
                        WHEN t.debit_account = 'user_margin' THEN -t.amount ELSE 0 END) AS margin,
               sum(CASE WHEN t.credit_account IN ('house_clearing', 'house_commission') THEN t.amount
                        WHEN t.debit_account IN ('house_clearing', 'house_commission') THEN -t.amount
                        ELSE 0 END) AS house,
               sum(t.amount) FILTER (WHERE t.kind IN ('margin_lock', 'commission')) AS taken,
               sum(t.amount) FILTER (WHERE t.kind = 'reversal') AS given_back
        FROM ledger_transfers t
        WHERE (p_user_ids IS NULL OR t.user_id = ANY (p_user_ids))
          AND (p_ledger_max IS NULL OR t.id <= p_ledger_max)
        GROUP BY t.user_id
    ), o AS (
        SELECT o.user_id,
               sum(o.total_cost) FILTER (WHERE o.status IN ('executed', 'rolled_back')) AS cost_executed,
               sum(o.total_cost) FILTER (WHERE o.status = 'rolled_back') AS cost_rolled_back,
               count(*) FILTER (WHERE o.status = 'executed') AS n_executed,
               count(*) FILTER (WHERE o.status = 'rolled_back') AS n_rolled_back
        FROM orders o
        WHERE p_user_ids IS NULL OR o.user_id = ANY (p_user_ids)
        GROUP BY o.user_id
    ), p AS (
        SELECT p.user_id,
               sum(p.margin_used) FILTER (WHERE p.status = 'open') AS open_margin,
               count(*) FILTER (WHERE p.status <> 'rolled_back') AS n_live,
               count(*) FILTER (WHERE p.status = 'rolled_back') AS n_rolled_back
        FROM positions p
        WHERE p_user_ids IS NULL OR p.user_id = ANY (p_user_ids)
        GROUP BY p.user_id
    ), a AS (
        SELECT a.user_id, count(*) AS n_rollback_rows
        FROM order_audit_log a
        WHERE a.action = 'order_rolled_back'
          AND (p_audit_max IS NULL OR a.id <= p_audit_max)
          -- per user through the orders, so the audit log needs no index on user_id
          AND (p_user_ids IS NULL
               OR a.order_id IN (SELECT o.id FROM orders o
                                 WHERE o.user_id = ANY (p_user_ids) AND o.status = 'rolled_back'))
        GROUP BY a.user_id
    )
    SELECT coalesce(l.user_id, o.user_id, p.user_id, a.user_id),
           coalesce(l.cash, 0), coalesce(l.margin, 0), coalesce(l.house, 0),
           coalesce(l.taken, 0), coalesce(l.given_back, 0),
           coalesce(o.cost_executed, 0), coalesce(o.cost_rolled_back, 0),
           coalesce(o.n_executed, 0), coalesce(o.n_rolled_back, 0),
           coalesce(p.open_margin, 0), coalesce(p.n_live, 0), coalesce(p.n_rolled_back, 0),
           coalesce(a.n_rollback_rows, 0)
    FROM l
    FULL JOIN o ON o.user_id = l.user_id
    FULL JOIN p ON p.user_id = coalesce(l.user_id, o.user_id)
    FULL JOIN a ON a.user_id = coalesce(l.user_id, o.user_id, p.user_id);
END
$$;

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
CREATE FUNCTION _ledger_audit(p_user_ids uuid[], p_full boolean DEFAULT false)
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

-- The money half of a rollback, as one statement. The caller has locked the orders (by
-- id), checked that each belongs to p_user_id, is 'executed' and has an open position.
-- This locks the profile (its UPDATE), reverses exactly what the executions took, closes
-- the positions, marks the orders and writes one audit row per order. The unique index on
-- reverses_id makes a second reversal of any transfer fail, whatever else went wrong.
CREATE FUNCTION _rollback_locked_orders(
    p_user_id uuid, p_order_ids uuid[], p_reason text, p_mode text,
    p_transaction_id uuid, p_started timestamptz, p_extra jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_n           integer := cardinality(p_order_ids);
    v_rollback_id uuid := gen_random_uuid();
    v_cash        numeric;
    v_margin      numeric;
    v_transfers   integer;
    v_profiles    integer;
    v_positions   integer;
    v_orders      integer;
    v_duration    bigint;
BEGIN
    -- This statement writes its own book_changes row; the triggers that would write one
    -- per order and per position stand aside for it (and only for it: reset below).
    PERFORM set_config('incident.book_changes', 'written', true);
    WITH reversed AS (
        INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, reverses_id)
        SELECT t.user_id, t.credit_account, t.debit_account, t.amount, 'reversal', t.order_id, t.id
        FROM ledger_transfers t
        WHERE t.order_id = ANY (p_order_ids) AND t.reverses_id IS NULL AND t.user_id = p_user_id
        RETURNING debit_account, credit_account, amount
    ), sums AS (
        SELECT coalesce(sum(CASE WHEN credit_account = 'user_cash' THEN amount
                                 WHEN debit_account = 'user_cash' THEN -amount END), 0) AS cash,
               coalesce(sum(CASE WHEN credit_account = 'user_margin' THEN amount
                                 WHEN debit_account = 'user_margin' THEN -amount END), 0) AS margin,
               count(*) AS n
        FROM reversed
    ), profile AS (
        UPDATE profiles p SET balance = p.balance + s.cash, margin_used = p.margin_used + s.margin
        FROM sums s WHERE p.id = p_user_id
        RETURNING p.is_drill
    ), closed AS (
        UPDATE positions SET status = 'rolled_back', closed_at = now()
        WHERE order_id = ANY (p_order_ids) AND user_id = p_user_id AND status = 'open'
        RETURNING margin_used
    ), marked AS (
        -- failure_reason is left as it was: it is forensic evidence.
        UPDATE orders
        SET status = 'rolled_back', rolled_back_at = now(), rolled_back_reason = p_reason, updated_at = now()
        WHERE id = ANY (p_order_ids) AND user_id = p_user_id AND status = 'executed'
        RETURNING id, executed_at, commission, total_cost
    ), daily AS (
        INSERT INTO daily_pnl_tracking AS d (user_id, trading_date, orders_rolled_back, commission_refunded)
        SELECT p_user_id, (m.executed_at AT TIME ZONE 'UTC')::date, count(*), sum(m.commission)
        FROM marked m GROUP BY 2
        ON CONFLICT (user_id, trading_date) DO UPDATE
        SET orders_rolled_back = d.orders_rolled_back + excluded.orders_rolled_back,
            commission_refunded = d.commission_refunded + excluded.commission_refunded
    ), audit AS (
        INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, batch_id, mode,
                                     transaction_id, operator, duration_us, is_drill, details)
        SELECT m.id, p_user_id, 'order_rolled_back', v_rollback_id, _batch_id(), p_mode, p_transaction_id,
               _operator(), (extract(epoch FROM clock_timestamp() - p_started) * 1000000)::bigint,
               coalesce((SELECT bool_or(is_drill) FROM profile), false),
               -- The rest of the story is on the order row, which is never deleted.
               jsonb_build_object('reason', p_reason, 'refunded', _money(m.total_cost))
        FROM marked m
        RETURNING duration_us
    ), changes AS (
        -- What this did to the audited figures (see book_changes), in one row: executed
        -- orders became rolled back, open positions rolled back.
        INSERT INTO book_changes (user_id, d_cost_rolled_back, d_n_executed, d_n_rolled_back,
                                  d_open_margin, d_n_live, d_n_positions_rolled_back)
        SELECT p_user_id, m.cost, -m.n, m.n, -c.margin, -c.n, c.n
        FROM (SELECT coalesce(sum(total_cost), 0) AS cost, count(*) AS n FROM marked) m,
             (SELECT coalesce(sum(margin_used), 0) AS margin, count(*) AS n FROM closed) c
    )
    SELECT s.cash, s.margin, s.n, (SELECT count(*) FROM profile), (SELECT count(*) FROM closed),
           (SELECT count(*) FROM marked), (SELECT max(duration_us) FROM audit)
    INTO v_cash, v_margin, v_transfers, v_profiles, v_positions, v_orders, v_duration
    FROM sums s;
    PERFORM set_config('incident.book_changes', '', true);

    -- The caller checked every one of these under its locks; a difference means a row
    -- changed under us (a position closed at the same moment): retry the whole call.
    IF v_profiles <> 1 OR v_positions <> v_n OR v_orders <> v_n THEN
        RAISE EXCEPTION 'rollback of % order(s) touched % profile(s), % position(s), % order(s)',
            v_n, v_profiles, v_positions, v_orders
            USING ERRCODE = 'serialization_failure';
    END IF;

    RETURN jsonb_build_object(
        'success', true,
        'status', 'rolled_back',
        'mode', p_mode,
        'rollback_id', v_rollback_id,
        'user_id', p_user_id,
        'transaction_id', p_transaction_id,
        'order_ids', to_jsonb(p_order_ids),
        'refunded', _money(v_cash),
        'margin_released', _money(-v_margin),
        'transfers_reversed', v_transfers,
        'duration_us', v_duration) || p_extra;
END
$$;

---------------------------------------------------------------------------------------------
-- The SQL contract
---------------------------------------------------------------------------------------------

-- Orders of the user that an executor is still working on.
CREATE FUNCTION check_active_transactions(p_user_id uuid)
RETURNS integer LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT count(*)::integer FROM orders
    WHERE user_id = p_user_id AND status IN ('pending', 'executing')
$$;

-- Every invariant violation in the whole book; no rows: consistent. Incremental from the
-- latest checkpoint when there is one.
CREATE FUNCTION ledger_audit()
RETURNS TABLE (user_id uuid, check_name text, expected numeric, actual numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT * FROM _ledger_audit(NULL)
$$;

-- The same, recomputed from the tables alone, trusting no checkpoint.
CREATE FUNCTION ledger_audit_full()
RETURNS TABLE (user_id uuid, check_name text, expected numeric, actual numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT * FROM _ledger_audit(NULL, true)
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

-- The same checks restricted to some users (used after a batch and by the pre/post-checks).
CREATE FUNCTION ledger_audit_users(p_user_ids uuid[])
RETURNS TABLE (user_id uuid, check_name text, expected numeric, actual numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT * FROM _ledger_audit(coalesce(p_user_ids, '{}'::uuid[]))
$$;

CREATE FUNCTION create_trading_account(p_user_id uuid, p_initial_deposit numeric)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_deposit numeric(20,8);
BEGIN
    IF p_user_id IS NULL OR p_initial_deposit IS NULL THEN
        RETURN _refusal('invalid_argument', 'user id and initial deposit are required');
    END IF;
    IF p_initial_deposit < 0 OR p_initial_deposit >= 1e11 OR p_initial_deposit <> round(p_initial_deposit, 8) THEN
        RETURN _refusal('invalid_amount',
            'the initial deposit must be between 0 and 100000000000 with at most 8 decimals');
    END IF;
    v_deposit := p_initial_deposit;

    INSERT INTO profiles (id, balance, is_drill)
    VALUES (p_user_id, v_deposit, coalesce(current_setting('incident.drill', true), '') = 'on')
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN _refusal('account_exists', 'an account with this user id already exists',
                        jsonb_build_object('user_id', p_user_id));
    END IF;

    IF v_deposit > 0 THEN
        INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind)
        VALUES (p_user_id, 'house_clearing', 'user_cash', v_deposit, 'deposit');
    END IF;

    RETURN jsonb_build_object('success', true, 'user_id', p_user_id, 'balance', _money(v_deposit));
END
$$;

CREATE FUNCTION _order_result(o orders, p_duplicate boolean)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN o.status = 'failed' THEN
        _refusal(split_part(o.failure_reason, ':', 1), o.failure_reason,
                 jsonb_build_object('order_id', o.id, 'status', o.status, 'duplicate', p_duplicate))
    ELSE jsonb_build_object(
        'success', true,
        'duplicate', p_duplicate,
        'order_id', o.id,
        'position_id', o.position_id,
        'transaction_id', o.transaction_id,
        'status', o.status,
        'symbol', o.symbol,
        'side', o.side,
        'quantity', _money(o.quantity),
        'execution_price', _money(o.execution_price),
        'commission', _money(o.commission),
        'total_cost', _money(o.total_cost),
        'executed_at', o.executed_at)
    END
$$;

CREATE FUNCTION execute_order_atomic(
    p_user_id uuid, p_symbol text, p_order_type text, p_side text, p_quantity numeric,
    p_price numeric, p_idempotency_key text, p_transaction_id uuid DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_margin_rate     numeric;
    v_commission_rate numeric;
    v_balance         numeric;
    v_existing        orders;
    v_notional        numeric;
    v_margin          numeric(20,8);
    v_commission      numeric(20,8);
    v_total           numeric(20,8);
    v_order           orders;
    v_position_id     uuid := gen_random_uuid();
BEGIN
    IF p_user_id IS NULL OR p_symbol IS NULL OR p_order_type IS NULL OR p_side IS NULL
       OR p_quantity IS NULL OR p_price IS NULL OR p_idempotency_key IS NULL THEN
        RETURN _refusal('invalid_argument', 'user, symbol, order type, side, quantity, price and idempotency key are required');
    END IF;
    IF p_order_type NOT IN ('market', 'limit', 'stop') THEN
        RETURN _refusal('invalid_argument', 'order type must be market, limit or stop');
    END IF;
    IF p_side NOT IN ('buy', 'sell') THEN
        RETURN _refusal('invalid_argument', 'side must be buy or sell');
    END IF;
    IF p_quantity <= 0 OR p_price <= 0 OR p_quantity <> round(p_quantity, 8) OR p_price <> round(p_price, 8)
       OR p_quantity * p_price >= 1e11 THEN
        RETURN _refusal('invalid_argument',
            'quantity and price must be positive, with at most 8 decimals, and their product below 100000000000');
    END IF;
    IF length(p_idempotency_key) NOT BETWEEN 1 AND 200 THEN
        RETURN _refusal('invalid_argument', 'the idempotency key must be 1 to 200 characters');
    END IF;

    -- Shared with other executions, exclusive with set_maintenance_mode: once maintenance
    -- mode is on and committed, no execution that missed it can still commit.
    PERFORM pg_advisory_xact_lock_shared(4242001);
    IF (SELECT maintenance_mode FROM system_settings) THEN
        RETURN _refusal('maintenance_mode', 'new orders are suspended: maintenance mode is on');
    END IF;

    SELECT margin_rate, commission_rate INTO v_margin_rate, v_commission_rate
    FROM instruments WHERE symbol = p_symbol AND tradable;
    IF NOT FOUND THEN
        RETURN _refusal('unknown_symbol', 'the symbol is not a tradable instrument');
    END IF;

    SELECT balance INTO v_balance FROM profiles WHERE id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN _refusal('account_not_found', 'no trading account with this user id');
    END IF;

    -- Checked under the profile lock, so two calls with one key cannot both execute.
    SELECT * INTO v_existing FROM orders
    WHERE user_id = p_user_id AND idempotency_key = p_idempotency_key;
    IF FOUND THEN
        RETURN _order_result(v_existing, true);
    END IF;

    v_notional := p_quantity * p_price;
    v_margin := round(v_notional * v_margin_rate, 8);
    v_commission := round(v_notional * v_commission_rate, 8);
    v_total := v_margin + v_commission;

    IF v_balance < v_total THEN
        INSERT INTO orders (user_id, symbol, order_type, side, quantity, price, status,
                            transaction_id, idempotency_key, failure_reason)
        VALUES (p_user_id, p_symbol, p_order_type, p_side, p_quantity, p_price, 'failed',
                p_transaction_id, p_idempotency_key,
                format('insufficient_funds: needs %s, balance %s', v_total, v_balance))
        RETURNING * INTO v_order;
        RETURN _order_result(v_order, false);
    END IF;

    INSERT INTO orders (user_id, symbol, order_type, side, quantity, price, status, transaction_id,
                        idempotency_key, commission, execution_price, total_cost, executed_at, position_id)
    VALUES (p_user_id, p_symbol, p_order_type, p_side, p_quantity, p_price, 'executed', p_transaction_id,
            p_idempotency_key, v_commission, p_price, v_total, now(), v_position_id)
    RETURNING * INTO v_order;

    INSERT INTO positions (id, user_id, order_id, symbol, side, quantity, entry_price, margin_used,
                           commission_paid, transaction_id)
    VALUES (v_position_id, p_user_id, v_order.id, p_symbol, p_side, p_quantity, p_price, v_margin,
            v_commission, p_transaction_id);

    INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id)
    SELECT p_user_id, 'user_cash', t.credit, t.amount, t.kind, v_order.id
    FROM (VALUES ('user_margin'::ledger_account, v_margin, 'margin_lock'::transfer_kind),
                 ('house_commission'::ledger_account, v_commission, 'commission'::transfer_kind))
         AS t (credit, amount, kind)
    WHERE t.amount > 0;

    UPDATE profiles SET balance = balance - v_total, margin_used = margin_used + v_margin
    WHERE id = p_user_id;

    INSERT INTO daily_pnl_tracking AS d (user_id, trading_date, orders_executed, commission_paid)
    VALUES (p_user_id, (now() AT TIME ZONE 'UTC')::date, 1, v_commission)
    ON CONFLICT (user_id, trading_date) DO UPDATE
    SET orders_executed = d.orders_executed + 1, commission_paid = d.commission_paid + excluded.commission_paid;

    RETURN _order_result(v_order, false);
END
$$;

-- Roll back one executed order.
CREATE FUNCTION rollback_execute_order_atomic(p_order_id uuid, p_user_id uuid, p_rollback_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_refusal jsonb;
    v_status   text;
    v_tx       uuid;
    v_position text;
BEGIN
    IF p_order_id IS NULL OR p_user_id IS NULL THEN
        RETURN _refusal('invalid_argument', 'order id and user id are required');
    END IF;
    v_refusal := _reason_refusal(p_rollback_reason);
    IF v_refusal IS NOT NULL THEN
        RETURN v_refusal;
    END IF;

    SELECT o.status, o.transaction_id, p.status INTO v_status, v_tx, v_position
    FROM orders o LEFT JOIN positions p ON p.id = o.position_id
    WHERE o.id = p_order_id AND o.user_id = p_user_id
    FOR UPDATE OF o;
    IF NOT FOUND THEN
        RETURN _refusal('order_not_found', 'no order with this id belongs to this user',
                        jsonb_build_object('order_id', p_order_id));
    END IF;
    IF v_status = 'rolled_back' THEN
        RETURN _refusal('already_rolled_back', 'the order was already rolled back',
                        jsonb_build_object('order_id', p_order_id, 'status', v_status));
    END IF;
    IF v_status <> 'executed' THEN
        RETURN _refusal('not_rollbackable', format('an order in status %s cannot be rolled back', v_status),
                        jsonb_build_object('order_id', p_order_id, 'status', v_status));
    END IF;
    IF v_position IS DISTINCT FROM 'open' THEN
        RETURN _refusal('not_rollbackable', 'the position of the order is no longer open (closed by the trader)',
                        jsonb_build_object('order_id', p_order_id, 'reason', 'position_not_open',
                                           'position_status', v_position));
    END IF;

    RETURN _rollback_locked_orders(p_user_id, ARRAY[p_order_id], p_rollback_reason, 'single', v_tx, v_started);
END
$$;

-- Roll back every executed order of the order's transaction group for that user.
-- Failed and cancelled orders of the group are left alone (they moved no money); a group
-- with an order still pending or executing is refused as a whole.
CREATE FUNCTION rollback_order_execution(p_order_id uuid, p_user_id uuid, p_rollback_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_started    timestamptz := clock_timestamp();
    v_refusal    jsonb;
    v_tx         uuid;
    v_executed   uuid[];
    v_done       uuid[];
    v_skipped    jsonb;
    v_in_flight  jsonb;
    v_closed     jsonb;
BEGIN
    IF p_order_id IS NULL OR p_user_id IS NULL THEN
        RETURN _refusal('invalid_argument', 'order id and user id are required');
    END IF;
    v_refusal := _reason_refusal(p_rollback_reason);
    IF v_refusal IS NOT NULL THEN
        RETURN v_refusal;
    END IF;

    SELECT transaction_id INTO v_tx FROM orders WHERE id = p_order_id AND user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN _refusal('order_not_found', 'no order with this id belongs to this user',
                        jsonb_build_object('order_id', p_order_id));
    END IF;
    IF v_tx IS NULL THEN
        RETURN _refusal('no_transaction_id',
            'the order has no transaction id, so it has no group; roll it back on its own',
            jsonb_build_object('order_id', p_order_id));
    END IF;

    SELECT array_agg(g.id ORDER BY g.id) FILTER (WHERE g.status = 'executed'),
           array_agg(g.id ORDER BY g.id) FILTER (WHERE g.status = 'rolled_back'),
           coalesce(jsonb_agg(jsonb_build_object('order_id', g.id, 'status', g.status) ORDER BY g.id)
                    FILTER (WHERE g.status IN ('failed', 'cancelled')), '[]'::jsonb),
           jsonb_agg(jsonb_build_object('order_id', g.id, 'status', g.status) ORDER BY g.id)
                    FILTER (WHERE g.status IN ('pending', 'executing')),
           jsonb_agg(jsonb_build_object('order_id', g.id, 'position_status', g.position_status) ORDER BY g.id)
                    FILTER (WHERE g.status = 'executed' AND g.position_status IS DISTINCT FROM 'open')
    INTO v_executed, v_done, v_skipped, v_in_flight, v_closed
    FROM (SELECT o.id, o.status, p.status AS position_status
          FROM orders o LEFT JOIN positions p ON p.id = o.position_id
          WHERE o.transaction_id = v_tx AND o.user_id = p_user_id
          ORDER BY o.id FOR UPDATE OF o) AS g;

    IF v_in_flight IS NOT NULL THEN
        RETURN _refusal('not_rollbackable', 'orders of the group are still pending or executing',
                        jsonb_build_object('transaction_id', v_tx, 'in_flight', v_in_flight));
    END IF;
    IF v_closed IS NOT NULL THEN
        RETURN _refusal('not_rollbackable', 'positions of the group are no longer open (closed by the trader)',
                        jsonb_build_object('transaction_id', v_tx, 'reason', 'position_not_open',
                                           'positions', v_closed));
    END IF;
    IF v_executed IS NULL THEN
        IF v_done IS NOT NULL THEN
            RETURN _refusal('already_rolled_back', 'every order of the group was already rolled back',
                            jsonb_build_object('transaction_id', v_tx, 'order_ids', to_jsonb(v_done)));
        END IF;
        RETURN _refusal('not_rollbackable', 'no order of the group was executed',
                        jsonb_build_object('transaction_id', v_tx, 'skipped', v_skipped));
    END IF;

    RETURN _rollback_locked_orders(p_user_id, v_executed, p_rollback_reason, 'transaction', v_tx, v_started,
        jsonb_build_object('skipped', v_skipped,
                           'already_rolled_back', coalesce(to_jsonb(v_done), '[]'::jsonb)));
END
$$;

-- Every pre-check in one round trip, and the baseline the post-check compares with.
CREATE FUNCTION rollback_precheck(p_order_id uuid, p_user_id uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_order      orders;
    v_position   positions;
    v_profile    profiles;
    v_checks     jsonb := '[]'::jsonb;
    v_active     integer;
    v_single     record;
    v_group      record;
    v_group_ids  uuid[];
    v_skipped    jsonb := '[]'::jsonb;
    v_violations jsonb;
    v_open       integer;
BEGIN
    IF p_order_id IS NULL OR p_user_id IS NULL THEN
        RETURN jsonb_build_object('ready', false, 'error_code', 'invalid_argument',
            'checks', jsonb_build_array(jsonb_build_object('check', 'arguments', 'passed', false,
                'detail', 'order id and user id are required')),
            'baseline', NULL);
    END IF;

    SELECT * INTO v_order FROM orders WHERE id = p_order_id AND user_id = p_user_id;
    v_checks := v_checks || jsonb_build_object('check', 'order_exists', 'passed', v_order.id IS NOT NULL,
        'detail', CASE WHEN v_order.id IS NULL THEN 'no order with this id belongs to this user'
                       ELSE format('order of %s %s %s', v_order.side, v_order.quantity, v_order.symbol) END);

    v_checks := v_checks || jsonb_build_object('check', 'order_executed',
        'passed', coalesce(v_order.status = 'executed', false),
        'detail', CASE WHEN v_order.id IS NULL THEN 'no order'
                       WHEN v_order.status = 'executed' THEN 'status executed'
                       WHEN v_order.status = 'rolled_back' THEN 'already rolled back'
                       ELSE format('status %s cannot be rolled back', v_order.status) END);

    SELECT * INTO v_position FROM positions WHERE order_id = p_order_id AND user_id = p_user_id;
    v_checks := v_checks || jsonb_build_object('check', 'position_open',
        'passed', coalesce(v_position.status = 'open', false),
        'detail', CASE WHEN v_position.id IS NULL THEN 'the order has no position'
                       ELSE format('position %s, margin %s', v_position.status, v_position.margin_used) END);

    SELECT * INTO v_profile FROM profiles WHERE id = p_user_id;
    v_checks := v_checks || jsonb_build_object('check', 'profile_accessible',
        'passed', v_profile.id IS NOT NULL,
        'detail', CASE WHEN v_profile.id IS NULL THEN 'no trading account for this user'
                       ELSE format('balance %s, margin used %s', v_profile.balance, v_profile.margin_used) END);

    v_active := check_active_transactions(p_user_id);
    v_checks := v_checks || jsonb_build_object('check', 'no_active_transactions', 'passed', v_active = 0,
        'detail', format('%s order(s) of the user pending or executing', v_active));

    SELECT * INTO v_single FROM _execution_totals(p_user_id, ARRAY[p_order_id]);
    v_checks := v_checks || jsonb_build_object('check', 'execution_transfers_unreversed',
        'passed', v_order.id IS NOT NULL AND v_single.reversed = 0
                  AND v_single.transfers > 0 AND v_single.cash_back = v_order.total_cost,
        'detail', format('%s transfer(s), %s reversed, refund %s of total cost %s',
                         v_single.transfers, v_single.reversed, v_single.cash_back,
                         coalesce(v_order.total_cost::text, 'none')));

    SELECT jsonb_agg(jsonb_build_object('check', a.check_name, 'expected', _money(a.expected),
                                        'actual', _money(a.actual)))
    INTO v_violations FROM _ledger_audit(ARRAY[p_user_id]) a;
    v_checks := v_checks || jsonb_build_object('check', 'user_ledger_consistent',
        'passed', v_violations IS NULL,
        'detail', CASE WHEN v_violations IS NULL THEN 'balance and margin agree with the ledger and positions'
                       ELSE format('%s invariant(s) violated', jsonb_array_length(v_violations)) END,
        'violations', coalesce(v_violations, '[]'::jsonb));

    IF v_order.transaction_id IS NOT NULL THEN
        SELECT coalesce(array_agg(o.id ORDER BY o.id) FILTER (WHERE o.status = 'executed'), '{}'),
               coalesce(jsonb_agg(jsonb_build_object('order_id', o.id, 'status', o.status) ORDER BY o.id)
                        FILTER (WHERE o.status <> 'executed'), '[]'::jsonb)
        INTO v_group_ids, v_skipped
        FROM orders o WHERE o.transaction_id = v_order.transaction_id AND o.user_id = p_user_id;
    ELSE
        v_group_ids := CASE WHEN v_order.status = 'executed' THEN ARRAY[p_order_id] ELSE '{}'::uuid[] END;
    END IF;
    SELECT * INTO v_group FROM _execution_totals(p_user_id, v_group_ids);

    SELECT count(*) INTO v_open FROM positions WHERE user_id = p_user_id AND status = 'open';

    RETURN jsonb_build_object(
        'ready', NOT jsonb_path_exists(v_checks, '$[*] ? (@.passed == false)'),
        'checks', v_checks,
        'baseline', CASE WHEN v_profile.id IS NULL OR v_order.id IS NULL THEN NULL ELSE jsonb_build_object(
            'version', 1,
            'order_id', p_order_id,
            'user_id', p_user_id,
            'captured_at', clock_timestamp(),
            'order_status', v_order.status,
            'failure_reason', v_order.failure_reason,
            'transaction_id', v_order.transaction_id,
            'position_id', v_order.position_id,
            'balance', _money(v_profile.balance),
            'margin_used', _money(v_profile.margin_used),
            'open_positions', v_open,
            'expected_refund', _money(v_single.cash_back),
            'expected_margin_release', _money(v_single.margin_back),
            'group', jsonb_build_object(
                'order_ids', to_jsonb(v_group_ids),
                'skipped', v_skipped,
                'expected_refund', _money(v_group.cash_back),
                'expected_margin_release', _money(v_group.margin_back))) END);
END
$$;

-- Prove a rollback against the baseline its pre-check took just before: exact equality
-- of money, and every structural consequence.
CREATE FUNCTION rollback_postcheck(p_order_id uuid, p_user_id uuid, p_baseline jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    c_money      constant text := '^-?[0-9]{1,12}(\.[0-9]{1,8})?$';
    v_checks     jsonb := '[]'::jsonb;
    v_order      orders;
    v_profile    profiles;
    v_audit      record;
    v_ids        uuid[];
    v_key        text;
    v_refund     numeric;
    v_release    numeric;
    v_expected   numeric;
    v_n          integer;
    v_m          integer;
    v_violations jsonb;
BEGIN
    -- The baseline comes from outside (a file, stdin): validate every field before use.
    IF p_order_id IS NULL OR p_user_id IS NULL OR p_baseline IS NULL
       OR jsonb_typeof(p_baseline) <> 'object'
       OR p_baseline ->> 'order_id' IS DISTINCT FROM p_order_id::text
       OR p_baseline ->> 'user_id' IS DISTINCT FROM p_user_id::text
       OR coalesce(p_baseline ->> 'balance', '') !~ c_money
       OR coalesce(p_baseline ->> 'margin_used', '') !~ c_money
       OR coalesce(p_baseline ->> 'expected_refund', '') !~ c_money
       OR coalesce(p_baseline ->> 'expected_margin_release', '') !~ c_money
       OR coalesce(p_baseline #>> '{group,expected_refund}', '') !~ c_money
       OR coalesce(p_baseline #>> '{group,expected_margin_release}', '') !~ c_money
       OR coalesce(p_baseline ->> 'open_positions', '') !~ '^[0-9]{1,9}$'
    THEN
        RETURN jsonb_build_object('successful', false, 'error_code', 'invalid_baseline',
            'checks', jsonb_build_array(jsonb_build_object('check', 'baseline_valid', 'passed', false,
                'detail', 'the baseline is not the pre-check baseline of this order and user')));
    END IF;

    SELECT * INTO v_order FROM orders WHERE id = p_order_id AND user_id = p_user_id;
    SELECT * INTO v_profile FROM profiles WHERE id = p_user_id;

    v_checks := v_checks || jsonb_build_object('check', 'order_rolled_back',
        'passed', coalesce(v_order.status = 'rolled_back', false),
        'expected', 'rolled_back', 'actual', coalesce(v_order.status, 'missing'),
        'detail', 'the order is marked rolled back');

    v_checks := v_checks || jsonb_build_object('check', 'failure_reason_preserved',
        'passed', v_order.id IS NOT NULL AND v_order.failure_reason IS NOT DISTINCT FROM p_baseline ->> 'failure_reason',
        'expected', p_baseline -> 'failure_reason', 'actual', to_jsonb(v_order.failure_reason),
        'detail', 'the original failure reason is untouched');

    -- What did the rollback cover: this order alone, or its transaction group?
    SELECT a.mode, a.rollback_id INTO v_audit
    FROM order_audit_log a WHERE a.order_id = p_order_id AND a.action = 'order_rolled_back';
    IF v_audit.mode = 'transaction' THEN
        v_key := 'group';
        v_refund := (p_baseline #>> '{group,expected_refund}')::numeric;
        v_release := (p_baseline #>> '{group,expected_margin_release}')::numeric;
        SELECT array_agg(a.order_id ORDER BY a.order_id) INTO v_ids
        FROM order_audit_log a WHERE a.rollback_id = v_audit.rollback_id AND a.action = 'order_rolled_back';
    ELSE
        v_key := 'single';
        v_refund := (p_baseline ->> 'expected_refund')::numeric;
        v_release := (p_baseline ->> 'expected_margin_release')::numeric;
        v_ids := ARRAY[p_order_id];
    END IF;

    IF v_key = 'group' THEN
        v_checks := v_checks || jsonb_build_object('check', 'group_matches_baseline',
            'passed', to_jsonb(v_ids) = p_baseline #> '{group,order_ids}',
            'expected', p_baseline #> '{group,order_ids}', 'actual', to_jsonb(v_ids),
            'detail', 'the orders rolled back are the executed orders of the group at pre-check time');
    END IF;

    SELECT count(*) FILTER (WHERE status = 'rolled_back'), count(*) INTO v_n, v_m
    FROM positions WHERE order_id = ANY (v_ids) AND user_id = p_user_id;
    v_checks := v_checks || jsonb_build_object('check', 'positions_closed',
        'passed', v_n = cardinality(v_ids) AND v_m = cardinality(v_ids),
        'expected', cardinality(v_ids), 'actual', v_n,
        'detail', 'each rolled-back order''s position is closed as rolled_back, not deleted');

    v_expected := (p_baseline ->> 'balance')::numeric + v_refund;
    v_checks := v_checks || jsonb_build_object('check', 'balance_restored',
        'passed', v_profile.balance IS NOT DISTINCT FROM v_expected,
        'expected', _money(v_expected), 'actual', _money(v_profile.balance),
        'detail', format('baseline %s + refund %s', p_baseline ->> 'balance', v_refund));

    v_expected := (p_baseline ->> 'margin_used')::numeric - v_release;
    v_checks := v_checks || jsonb_build_object('check', 'margin_released',
        'passed', v_profile.margin_used IS NOT DISTINCT FROM v_expected,
        'expected', _money(v_expected), 'actual', _money(v_profile.margin_used),
        'detail', format('baseline %s - release %s', p_baseline ->> 'margin_used', v_release));

    SELECT count(*) INTO v_n FROM positions WHERE user_id = p_user_id AND status = 'open';
    v_checks := v_checks || jsonb_build_object('check', 'open_positions',
        'passed', v_n = (p_baseline ->> 'open_positions')::integer - cardinality(v_ids),
        'expected', (p_baseline ->> 'open_positions')::integer - cardinality(v_ids), 'actual', v_n,
        'detail', 'open positions of the user after the rollback');

    SELECT count(*), count(r.id) FILTER (WHERE r.amount = t.amount AND r.debit_account = t.credit_account
                                          AND r.credit_account = t.debit_account)
    INTO v_m, v_n
    FROM ledger_transfers t
    LEFT JOIN ledger_transfers r ON r.reverses_id = t.id
    WHERE t.order_id = ANY (v_ids) AND t.reverses_id IS NULL AND t.user_id = p_user_id;
    v_checks := v_checks || jsonb_build_object('check', 'transfers_reversed',
        'passed', v_n = v_m AND v_m > 0, 'expected', v_m, 'actual', v_n,
        'detail', 'every execution transfer has exactly one mirror reversal');

    SELECT count(*) INTO v_n FROM order_audit_log
    WHERE order_id = ANY (v_ids) AND action = 'order_rolled_back';
    v_checks := v_checks || jsonb_build_object('check', 'one_audit_row_per_order',
        'passed', v_n = cardinality(v_ids), 'expected', cardinality(v_ids), 'actual', v_n,
        'detail', 'exactly one order_rolled_back audit row per order');

    SELECT jsonb_agg(jsonb_build_object('check', a.check_name, 'expected', _money(a.expected),
                                        'actual', _money(a.actual)))
    INTO v_violations FROM _ledger_audit(ARRAY[p_user_id]) a;
    v_checks := v_checks || jsonb_build_object('check', 'user_ledger_consistent',
        'passed', v_violations IS NULL, 'expected', 0,
        'actual', coalesce(jsonb_array_length(v_violations), 0),
        'detail', 'balance and margin agree with the ledger and positions',
        'violations', coalesce(v_violations, '[]'::jsonb));

    RETURN jsonb_build_object(
        'successful', NOT jsonb_path_exists(v_checks, '$[*] ? (@.passed == false)'),
        'mode', v_key,
        'order_ids', to_jsonb(v_ids),
        'checked_at', clock_timestamp(),
        'checks', v_checks);
END
$$;

-- Stop or resume new orders. Waits for executions in flight, so that once this commits
-- with p_enabled, no order that missed the switch can commit.
CREATE FUNCTION set_maintenance_mode(p_enabled boolean, p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_was boolean;
    v_now system_settings;
BEGIN
    IF p_enabled IS NULL THEN
        RETURN _refusal('invalid_argument', 'say whether maintenance mode is to be on or off');
    END IF;
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;

    PERFORM pg_advisory_xact_lock(4242001);
    SELECT maintenance_mode INTO v_was FROM system_settings FOR UPDATE;

    UPDATE system_settings SET
        maintenance_mode = p_enabled,
        maintenance_reason = CASE WHEN p_enabled THEN p_reason END,
        maintenance_since = CASE WHEN p_enabled THEN coalesce(CASE WHEN v_was THEN maintenance_since END, now()) END,
        maintenance_by = CASE WHEN p_enabled THEN _operator() END
    RETURNING * INTO v_now;

    INSERT INTO maintenance_log (enabled, reason, operator) VALUES (p_enabled, p_reason, _operator());
    PERFORM pg_notify('maintenance_mode', CASE WHEN p_enabled THEN 'on' ELSE 'off' END);

    RETURN jsonb_build_object('success', true, 'enabled', p_enabled, 'changed', v_was <> p_enabled,
                              'since', v_now.maintenance_since, 'reason', v_now.maintenance_reason,
                              'operator', _operator());
END
$$;

-- Roll back (one order, or its transaction group) and run the post-check against the
-- baseline in the same round trip. The post-check sees the rollback's own writes; if the
-- commit then fails, the client retries the whole call.
CREATE FUNCTION rollback_with_postcheck(p_order_id uuid, p_user_id uuid, p_rollback_reason text,
                                        p_baseline jsonb, p_transaction boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_result    jsonb;
    v_postcheck jsonb;
BEGIN
    IF coalesce(p_transaction, false) THEN
        v_result := rollback_order_execution(p_order_id, p_user_id, p_rollback_reason);
    ELSE
        v_result := rollback_execute_order_atomic(p_order_id, p_user_id, p_rollback_reason);
    END IF;
    IF NOT (v_result ->> 'success')::boolean THEN
        RETURN jsonb_build_object('rollback', v_result, 'postcheck', NULL);
    END IF;

    v_postcheck := rollback_postcheck(p_order_id, p_user_id, p_baseline);
    IF NOT (v_postcheck ->> 'successful')::boolean THEN
        PERFORM record_rollback_failure(p_order_id, p_user_id, 'postcheck_failed', v_postcheck);
    END IF;
    RETURN jsonb_build_object('rollback', v_result, 'postcheck', v_postcheck);
END
$$;

-- Record a rollback the client could not complete, or a post-check that failed: these
-- feed the failure count and the alerts of the metrics.
CREATE FUNCTION record_rollback_failure(p_order_id uuid, p_user_id uuid, p_action text, p_detail jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_drill boolean;
BEGIN
    IF p_order_id IS NULL OR p_user_id IS NULL OR p_action IS NULL
       OR p_action NOT IN ('rollback_failed', 'postcheck_failed') THEN
        RETURN _refusal('invalid_argument', 'order id, user id and an action of rollback_failed or postcheck_failed are required');
    END IF;
    IF octet_length(coalesce(p_detail, '{}'::jsonb)::text) > 100000 THEN
        RETURN _refusal('invalid_argument', 'the detail is larger than 100 kB');
    END IF;
    SELECT is_drill INTO v_drill FROM profiles WHERE id = p_user_id;

    INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, batch_id, operator, is_drill, details)
    VALUES (p_order_id, p_user_id, p_action, gen_random_uuid(), _batch_id(), _operator(),
            coalesce(v_drill, false), coalesce(p_detail, '{}'::jsonb));
    RETURN jsonb_build_object('success', true);
END
$$;

RESET ROLE;
