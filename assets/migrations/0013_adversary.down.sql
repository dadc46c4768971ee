-- Back to 0012 (function bodies of 0009, 0010, 0012 and 0005); drill accounts made since
-- stay drill accounts.
SET LOCAL ROLE incident_owner;

DROP FUNCTION create_drill_account(uuid, numeric);
CREATE OR REPLACE FUNCTION _rollback_locked_orders(
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
    v_now         timestamptz := clock_timestamp();
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
        UPDATE positions SET status = 'rolled_back', closed_at = greatest(v_now, opened_at)
        WHERE order_id = ANY (p_order_ids) AND user_id = p_user_id AND status = 'open'
        RETURNING margin_used
    ), marked AS (
        -- failure_reason is left as it was: it is forensic evidence.
        UPDATE orders
        SET status = 'rolled_back', rolled_back_at = greatest(v_now, executed_at), rolled_back_reason = p_reason,
            updated_at = v_now
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

CREATE OR REPLACE FUNCTION execute_order_atomic(
    p_user_id uuid, p_symbol text, p_order_type text, p_side text, p_quantity numeric,
    p_price numeric, p_idempotency_key text, p_transaction_id uuid DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_maintenance     boolean;
    v_margin_rate     numeric;
    v_commission_rate numeric;
    v_balance         numeric;
    v_existing        orders;
    v_notional        numeric;
    v_margin          numeric(20,8);
    v_commission      numeric(20,8);
    v_total           numeric(20,8);
    v_now             timestamptz;
    v_order           orders;
    v_position_id     uuid := gen_random_uuid();
BEGIN
    IF p_user_id IS NULL OR p_symbol IS NULL OR p_order_type IS NULL OR p_side IS NULL
       OR p_quantity IS NULL OR p_price IS NULL OR p_idempotency_key IS NULL THEN
        RETURN _refusal('invalid_argument', 'user, symbol, order type, side, quantity, price and idempotency key are required');
    END IF;
    IF length(p_idempotency_key) NOT BETWEEN 1 AND 200 THEN
        RETURN _refusal('invalid_argument', 'the idempotency key must be 1 to 200 characters');
    END IF;

    -- The key decides first: what its order became is the answer, before anything that may
    -- have changed since it was placed (maintenance, instruments, these very checks).
    SELECT * INTO v_existing FROM orders
    WHERE user_id = p_user_id AND idempotency_key = p_idempotency_key;
    IF FOUND THEN
        RETURN _order_replay(v_existing, p_symbol, p_order_type, p_side, p_quantity, p_price, p_transaction_id);
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

    -- Shared with other executions, exclusive with set_maintenance_mode: once maintenance
    -- mode is on and committed, no execution that missed it can still commit. Under READ
    -- COMMITTED the next statement's snapshot is taken after this lock, so it sees a switch
    -- that committed while we waited. A REPEATABLE READ or SERIALIZABLE transaction keeps
    -- the snapshot it took before (possibly before the switch): it locks the settings row
    -- too, which raises a serialization failure (40001, the client retries and is refused)
    -- when the row changed after that snapshot. ROW SHARE locks do not wait for each other
    -- and take the lock manager's fast path. 0012: a table lock, not an advisory lock: any
    -- login may take advisory lock 4242001, but only the table's owner may take a lock on
    -- system_settings that conflicts with this one.
    LOCK TABLE system_settings IN ROW SHARE MODE;
    IF current_setting('transaction_isolation') = 'read committed' THEN
        SELECT maintenance_mode INTO v_maintenance FROM system_settings;
    ELSE
        SELECT maintenance_mode INTO v_maintenance FROM system_settings FOR SHARE;
    END IF;
    IF v_maintenance THEN
        RETURN _refusal('maintenance_mode', 'new orders are suspended: maintenance mode is on');
    END IF;

    SELECT margin_rate, commission_rate INTO v_margin_rate, v_commission_rate
    FROM instruments WHERE symbol = p_symbol AND tradable;
    IF NOT FOUND THEN
        RETURN _refusal('unknown_symbol', 'the symbol is not a tradable instrument');
    END IF;

    v_notional := p_quantity * p_price;
    v_margin := round(v_notional * v_margin_rate, 8);
    v_commission := round(v_notional * v_commission_rate, 8);
    v_total := v_margin + v_commission;
    -- Nothing to lock and nothing to take: such an order could never be reversed or proved.
    IF v_total = 0 THEN
        RETURN _refusal('order_too_small',
            'the order''s margin and commission both round to 0 at 8 decimals: an order must move money');
    END IF;

    SELECT balance INTO v_balance FROM profiles WHERE id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN _refusal('account_not_found', 'no trading account with this user id');
    END IF;
    -- When the order executes: after the locks, so that an order never appears to have
    -- executed before a switch or a rollback it waited for.
    v_now := clock_timestamp();

    -- A call with the same key that committed while this one waited for the account
    -- conflicts here: under READ COMMITTED it is read and answered below; under REPEATABLE
    -- READ and SERIALIZABLE, where it is invisible, the server raises a serialization
    -- failure and the client's retry is answered by the lookup above.
    IF v_balance < v_total THEN
        INSERT INTO orders (user_id, symbol, order_type, side, quantity, price, status,
                            transaction_id, idempotency_key, failure_reason, updated_at)
        VALUES (p_user_id, p_symbol, p_order_type, p_side, p_quantity, p_price, 'failed',
                p_transaction_id, p_idempotency_key,
                format('insufficient_funds: needs %s, balance %s', v_total, v_balance), v_now)
        ON CONFLICT ON CONSTRAINT uq_orders_user_idempotency_key DO NOTHING
        RETURNING * INTO v_order;
    ELSE
        INSERT INTO orders (user_id, symbol, order_type, side, quantity, price, status, transaction_id,
                            idempotency_key, commission, execution_price, total_cost, executed_at, position_id,
                            updated_at)
        VALUES (p_user_id, p_symbol, p_order_type, p_side, p_quantity, p_price, 'executed', p_transaction_id,
                p_idempotency_key, v_commission, p_price, v_total, v_now, v_position_id, v_now)
        ON CONFLICT ON CONSTRAINT uq_orders_user_idempotency_key DO NOTHING
        RETURNING * INTO v_order;
    END IF;
    IF NOT FOUND THEN
        SELECT * INTO v_existing FROM orders
        WHERE user_id = p_user_id AND idempotency_key = p_idempotency_key;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the order of this idempotency key changed under the call'
                USING ERRCODE = 'serialization_failure';
        END IF;
        RETURN _order_replay(v_existing, p_symbol, p_order_type, p_side, p_quantity, p_price, p_transaction_id);
    END IF;
    IF v_order.status = 'failed' THEN
        RETURN _order_result(v_order, false);
    END IF;

    INSERT INTO positions (id, user_id, order_id, symbol, side, quantity, entry_price, margin_used,
                           commission_paid, transaction_id, opened_at)
    VALUES (v_position_id, p_user_id, v_order.id, p_symbol, p_side, p_quantity, p_price, v_margin,
            v_commission, p_transaction_id, v_now);

    INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id)
    SELECT p_user_id, 'user_cash', t.credit, t.amount, t.kind, v_order.id
    FROM (VALUES ('user_margin'::ledger_account, v_margin, 'margin_lock'::transfer_kind),
                 ('house_commission'::ledger_account, v_commission, 'commission'::transfer_kind))
         AS t (credit, amount, kind)
    WHERE t.amount > 0;

    UPDATE profiles SET balance = balance - v_total, margin_used = margin_used + v_margin
    WHERE id = p_user_id;

    INSERT INTO daily_pnl_tracking AS d (user_id, trading_date, orders_executed, commission_paid)
    VALUES (p_user_id, (v_now AT TIME ZONE 'UTC')::date, 1, v_commission)
    ON CONFLICT (user_id, trading_date) DO UPDATE
    SET orders_executed = d.orders_executed + 1, commission_paid = d.commission_paid + excluded.commission_paid;

    RETURN _order_result(v_order, false);
END
$$;

CREATE OR REPLACE FUNCTION ledger_audit_checkpoint(p_full boolean DEFAULT false)
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

CREATE OR REPLACE FUNCTION create_trading_account(p_user_id uuid, p_initial_deposit numeric)
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

DROP TABLE audit_epoch;

RESET ROLE;
