-- Back to 0015: maintenance for every symbol only. Refused while a symbol is suspended
-- (undoing it would let that symbol trade again unannounced); the log's symbol column goes,
-- which loses only which symbol past switches named, so it is refused when any did.
SET LOCAL ROLE incident_owner;

-- Before the check, so that it and the drops below are one: a symbol's switch committed
-- after the check would otherwise be dropped with the columns (the symbol trading again,
-- unannounced), and one in flight is waited for and then seen by the check.
LOCK TABLE instruments, maintenance_log IN EXCLUSIVE MODE;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM instruments WHERE suspended_since IS NOT NULL) THEN
        RAISE EXCEPTION 'refusing to undo migration 16: a symbol is in maintenance mode'
            USING HINT = 'turn its maintenance mode off first (maintenance off --symbol SYMBOL)';
    END IF;
    IF EXISTS (SELECT 1 FROM maintenance_log WHERE symbol IS NOT NULL) THEN
        RAISE EXCEPTION 'refusing to undo migration 16: maintenance_log records switches of single symbols'
            USING HINT = 'the maintenance log is never rewritten; keep migration 16';
    END IF;
END
$$;

DROP FUNCTION probe_new_orders(text);
-- The book's probe as 0008 wrote it.
CREATE OR REPLACE FUNCTION probe_new_orders()
RETURNS jsonb LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_answer jsonb;
BEGIN
    BEGIN
        v_answer := execute_order_atomic(gen_random_uuid(), 'EURUSD', 'market', 'buy', 1, 1,
                                         'maintenance-probe-' || gen_random_uuid()::text, NULL);
        RAISE EXCEPTION USING ERRCODE = 'IC001', MESSAGE = 'maintenance probe undone';
    EXCEPTION WHEN SQLSTATE 'IC001' THEN
        NULL;
    END;
    RETURN jsonb_build_object(
        'executed', coalesce((v_answer ->> 'success')::boolean, false),
        'error_code', v_answer ->> 'error_code',
        'isolation', current_setting('transaction_isolation'));
END
$$;
DROP FUNCTION set_symbol_maintenance(text, boolean, text);

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
    -- 0013: under REPEATABLE READ or SERIALIZABLE the snapshot may predate a rollback of
    -- that order: the row is locked, which raises a serialization failure (40001) when it
    -- changed after the snapshot, so that a retry is never told a rolled-back order is in
    -- effect. READ COMMITTED reads the latest committed row anyway.
    IF current_setting('transaction_isolation') = 'read committed' THEN
        SELECT * INTO v_existing FROM orders
        WHERE user_id = p_user_id AND idempotency_key = p_idempotency_key;
    ELSE
        SELECT * INTO v_existing FROM orders
        WHERE user_id = p_user_id AND idempotency_key = p_idempotency_key FOR SHARE;
    END IF;
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


ALTER TABLE maintenance_log DROP COLUMN symbol;
ALTER TABLE instruments
    DROP CONSTRAINT instruments_suspension_whole,
    DROP COLUMN suspended_since,
    DROP COLUMN suspended_reason,
    DROP COLUMN suspended_by,
    DROP COLUMN suspended_by_login;

RESET ROLE;
