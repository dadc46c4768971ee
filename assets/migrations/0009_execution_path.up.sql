-- The execution path, safe for a production database (issue 8, findings 2, 7 and 8).
--
--   * Maintenance mode holds under every isolation level: a REPEATABLE READ or SERIALIZABLE
--     execution whose snapshot predates the switch fails with a serialization failure
--     instead of committing an order after the switch (execute_order_atomic).
--   * The idempotency key decides first, and the payload is compared: a retry is answered
--     with what its order became (a rolled-back order says so: order_rolled_back), another
--     order under a used key is refused (idempotency_conflict) and changes nothing.
--   * Timestamps follow the events: executed_at, rolled_back_at and the positions' times
--     are taken when the thing happens (clock_timestamp(), after the locks), never before
--     an event it waited for, so a rollback begun before an execution it undoes no longer
--     trips orders_rollback_after_execution (23514).
--   * No order that moves no money executes (order_too_small); orders that did so before
--     this migration pass the pre-check and post-check instead of raising a false alert.
--
-- Function bodies only: no table, no data and no grant changes (CREATE OR REPLACE keeps
-- the owner and the privileges; the one new helper is executable by its owner alone).
SET LOCAL ROLE incident_owner;

-- What a call answers for an order it placed or found: success only for an order that is
-- executed now. A failed order answers its refusal again; an order rolled back since (or
-- cancelled, or still pending) says so with its own code, so that a client retrying a key
-- never takes an order that is no longer in effect for one that is.
CREATE OR REPLACE FUNCTION _order_result(o orders, p_duplicate boolean)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE
    WHEN o.status = 'failed' THEN
        _refusal(split_part(o.failure_reason, ':', 1), o.failure_reason,
                 jsonb_build_object('order_id', o.id, 'status', o.status, 'duplicate', p_duplicate))
    WHEN o.status = 'rolled_back' THEN
        _refusal('order_rolled_back',
                 'the order placed with this idempotency key executed and was rolled back since: it is not in effect',
                 jsonb_build_object('order_id', o.id, 'status', o.status, 'duplicate', p_duplicate,
                                    'transaction_id', o.transaction_id, 'executed_at', o.executed_at,
                                    'rolled_back_at', o.rolled_back_at))
    WHEN o.status <> 'executed' THEN
        _refusal('order_' || o.status,
                 'the order placed with this idempotency key is ' || o.status || ', not executed',
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

-- The answer to a call whose key already placed order o: that order's result when the call
-- asks for the same order (numerically equal amounts are the same), else a refusal that
-- names the order the key placed. Either way the call changes nothing.
CREATE FUNCTION _order_replay(o orders, p_symbol text, p_order_type text, p_side text,
                              p_quantity numeric, p_price numeric, p_transaction_id uuid)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE
    WHEN o.symbol = p_symbol AND o.order_type = p_order_type AND o.side = p_side
         AND o.quantity = p_quantity AND o.price IS NOT DISTINCT FROM p_price
         AND o.transaction_id IS NOT DISTINCT FROM p_transaction_id
    THEN _order_result(o, true)
    ELSE _refusal('idempotency_conflict',
                  'this idempotency key already placed another order; nothing was done',
                  jsonb_build_object('order_id', o.id, 'status', o.status))
    END
$$;
REVOKE EXECUTE ON FUNCTION _order_replay(orders, text, text, text, numeric, numeric, uuid) FROM PUBLIC;

-- 0009:
--   * the idempotency key decides first: a retry gets the order its key placed whatever
--     happened since (maintenance mode, an instrument halted), and a key reused for
--     another order is refused with idempotency_conflict;
--   * maintenance mode holds under every isolation level (see below);
--   * executed_at is when the order executed, after the locks (clock_timestamp()), not
--     when its transaction began;
--   * an order whose margin and commission both round to 0 moves no money: refused.
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
    -- instead, which raises a serialization failure (40001, the client retries and is
    -- refused) when the row changed after that snapshot. Shared row locks do not wait for
    -- each other; READ COMMITTED, the default, pays nothing for this.
    PERFORM pg_advisory_xact_lock_shared(4242001);
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

-- The money half of a rollback, as one statement. The caller has locked the orders (by
-- id), checked that each belongs to p_user_id, is 'executed' and has an open position.
-- This locks the profile (its UPDATE), reverses exactly what the executions took, closes
-- the positions, marks the orders and writes one audit row per order. The unique index on
-- reverses_id makes a second reversal of any transfer fail, whatever else went wrong.
-- 0009: the rollback's timestamps are taken when it happens (clock_timestamp(), after the
-- caller's locks), never before the execution they undo: now() is when the rollback's
-- transaction began, which can precede an execution it then rolls back.
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
-- Every pre-check in one round trip, and the baseline the post-check compares with.
-- 0009: an order that moved no money (total cost 0, executed before 0009 refused such
-- orders) has no transfers to reverse; that alone does not make it unready.
CREATE OR REPLACE FUNCTION rollback_precheck(p_order_id uuid, p_user_id uuid)
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
        'passed', coalesce(v_order.id IS NOT NULL AND v_single.reversed = 0
                           AND (v_single.transfers > 0 OR v_order.total_cost = 0)
                           AND v_single.cash_back = v_order.total_cost, false),
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
-- 0009: orders that moved no money (total cost 0, executed before 0009) have no transfers
-- to mirror; the rollback of such orders alone is not a failure.
CREATE OR REPLACE FUNCTION rollback_postcheck(p_order_id uuid, p_user_id uuid, p_baseline jsonb)
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
    v_cost       numeric;
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
    SELECT coalesce(sum(total_cost), 0) INTO v_cost FROM orders WHERE id = ANY (v_ids) AND user_id = p_user_id;
    v_checks := v_checks || jsonb_build_object('check', 'transfers_reversed',
        'passed', v_n = v_m AND (v_m > 0 OR v_cost = 0), 'expected', v_m, 'actual', v_n,
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
RESET ROLE;
