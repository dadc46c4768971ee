-- Locks nobody else can take (issue 8, found after the first round of fixes).
--
-- Executions and the maintenance switch synchronised on advisory lock 4242001, and copies
-- of a journal on an advisory lock per incident id. Advisory locks need no privilege: any
-- login, a role in no group at all, could hold 4242001 and stop every execution and the
-- switch the incident commander needs, or hold an incident's key and stop its copy. They
-- are table locks now, which only the owner of the table (the contract functions) may take
-- in a conflicting mode; a reader with SELECT can take only ACCESS SHARE, which conflicts
-- with neither.
--   execute_order_atomic   ROW SHARE on system_settings (executions never wait for each
--                          other; the lock manager's fast path)
--   set_maintenance_mode   EXCLUSIVE on system_settings (waits for executions in flight,
--                          holds new ones until it commits)
--   record_incident_events SHARE ROW EXCLUSIVE on incident_events (one copy at a time)
--
-- And times in the order things happened: the switch waits for executions in flight, so
-- "maintenance since" is taken after its lock (clock_timestamp()), never before an order it
-- let through executed; rows of the append-only record default to the moment they are
-- written, not the moment their transaction began (a rollback's audit row, a switch's log
-- row, a copied journal entry, a transfer).
-- Function bodies and column defaults only; CREATE OR REPLACE keeps owners and grants.
SET LOCAL ROLE incident_owner;

ALTER TABLE order_audit_log ALTER COLUMN created_at SET DEFAULT clock_timestamp();
ALTER TABLE maintenance_log ALTER COLUMN at SET DEFAULT clock_timestamp();
ALTER TABLE ledger_transfers ALTER COLUMN created_at SET DEFAULT clock_timestamp();
ALTER TABLE incident_events ALTER COLUMN copied_at SET DEFAULT clock_timestamp();

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

CREATE OR REPLACE FUNCTION set_maintenance_mode(p_enabled boolean, p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_was boolean;
    v_now system_settings;
    v_operator text := _operator();
BEGIN
    IF p_enabled IS NULL THEN
        RETURN _refusal('invalid_argument', 'say whether maintenance mode is to be on or off');
    END IF;
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;

    -- Waits for the executions in flight (they hold ROW SHARE) and keeps new ones out
    -- until this commits. A table lock: only the owner may take one that conflicts.
    LOCK TABLE system_settings IN EXCLUSIVE MODE;
    SELECT maintenance_mode INTO v_was FROM system_settings FOR UPDATE;

    UPDATE system_settings SET
        maintenance_mode = p_enabled,
        maintenance_reason = CASE WHEN p_enabled THEN p_reason END,
        maintenance_since = CASE WHEN p_enabled THEN coalesce(CASE WHEN v_was THEN maintenance_since END, clock_timestamp()) END,
        maintenance_by = CASE WHEN p_enabled THEN v_operator END,
        maintenance_by_login = CASE WHEN p_enabled THEN session_user::text END
    RETURNING * INTO v_now;

    INSERT INTO maintenance_log (enabled, reason, operator) VALUES (p_enabled, p_reason, v_operator);
    PERFORM pg_notify('maintenance_mode', CASE WHEN p_enabled THEN 'on' ELSE 'off' END);

    RETURN jsonb_build_object('success', true, 'enabled', p_enabled, 'changed', v_was <> p_enabled,
                              'since', v_now.maintenance_since, 'reason', v_now.maintenance_reason,
                              'operator', v_operator, 'login', session_user::text);
END
$$;

CREATE OR REPLACE FUNCTION record_incident_events(p_incident_id text, p_entries jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_inserted  integer;
    v_conflicts jsonb;
    v_invalid   jsonb;
    v_checked   bigint;
BEGIN
    IF p_incident_id IS NULL OR p_entries IS NULL OR jsonb_typeof(p_entries) <> 'array' THEN
        RETURN _refusal('invalid_argument', 'an incident id and an array of entries are required');
    END IF;
    IF p_incident_id !~ '^[A-Za-z0-9-]{1,64}$' THEN
        RETURN _refusal('invalid_argument', 'an incident id is 1 to 64 letters, digits and dashes');
    END IF;
    BEGIN
        -- count(at) makes every value be read, so a malformed one raises here.
        SELECT jsonb_agg(e.ord ORDER BY e.ord) FILTER (WHERE NOT e.valid), count(e.at)
        FROM _incident_entries(p_entries) e INTO v_invalid, v_checked;
    EXCEPTION WHEN data_exception THEN
        RETURN _refusal('invalid_entry', 'an entry''s line is not a journal line',
                        jsonb_build_object('inserted', 0, 'invalid', '[]'::jsonb, 'conflicts', '[]'::jsonb));
    END;
    IF v_invalid IS NOT NULL THEN
        RETURN _refusal('invalid_entry',
                        'entries whose line is not a journal line or does not hash to their hash',
                        jsonb_build_object('inserted', 0, 'invalid', v_invalid, 'conflicts', '[]'::jsonb));
    END IF;

    -- One copy at a time (copies are small and rare); a table lock, which only the owner
    -- may take in a mode that conflicts, where an advisory lock could be held by anyone.
    LOCK TABLE incident_events IN SHARE ROW EXCLUSIVE MODE;

    -- A new snapshot after the lock: what a concurrent copy committed is visible here.
    WITH input AS (
        SELECT e.seq, e.prev, e.hash FROM _incident_entries(p_entries) e
    ), known AS (
        SELECT seq, hash FROM input
        UNION ALL
        SELECT x.seq, x.hash FROM incident_events x
        WHERE x.incident_id = p_incident_id AND x.seq IN (SELECT seq FROM input UNION SELECT seq - 1 FROM input)
    ), settled AS (
        -- The version of each entry that counts: the stored one, else the one sent.
        SELECT DISTINCT ON (seq) seq, hash FROM (
            SELECT x.seq, x.hash, 0 AS rank FROM incident_events x
            WHERE x.incident_id = p_incident_id AND x.seq IN (SELECT seq - 1 FROM input)
            UNION ALL
            SELECT seq, hash, 1 FROM input
        ) v ORDER BY seq, rank
    ), bad AS (
        -- two versions of one entry
        SELECT seq FROM known GROUP BY seq HAVING count(DISTINCT hash) > 1
        UNION
        -- an entry that does not follow the one before it
        SELECT i.seq FROM input i
        WHERE (i.seq = 1 AND i.prev <> repeat('0', 64))
           OR (i.seq > 1 AND EXISTS (SELECT 1 FROM settled k WHERE k.seq = i.seq - 1 AND k.hash <> i.prev))
    )
    SELECT jsonb_agg(seq ORDER BY seq) FROM bad INTO v_conflicts;
    IF v_conflicts IS NOT NULL THEN
        RETURN jsonb_build_object('success', false, 'inserted', 0, 'conflicts', v_conflicts);
    END IF;

    WITH ins AS (
        INSERT INTO incident_events (incident_id, seq, at, operator, kind, data, prev, hash, line)
        SELECT p_incident_id, e.seq, e.at, e.operator, e.kind, e.data, e.prev, e.hash, e.line
        FROM _incident_entries(p_entries) e
        ORDER BY e.ord
        ON CONFLICT (incident_id, seq) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM ins INTO v_inserted;
    RETURN jsonb_build_object('success', true, 'inserted', v_inserted, 'conflicts', '[]'::jsonb);
END
$$;

RESET ROLE;
