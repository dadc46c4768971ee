-- Back to 0022 (0021's rollback step and 0010's audit): the refund is not checked in the
-- step, and the audit does not look at the order a transfer names.
SET LOCAL ROLE incident_owner;

-- Every rollback passes here before it moves money (the functions that roll back call it
-- by name). The caller has locked the orders (by id), checked that each belongs to
-- p_user_id, is 'executed' and has an open position. This checks the circuit breaker,
-- then the approval of the session's operation, else the login's budget; then one
-- statement locks the profile (its UPDATE), reverses exactly what the executions took,
-- closes the positions, marks the orders and writes one audit row per order. The unique
-- index on reverses_id makes a second reversal of any transfer fail, whatever else went
-- wrong.
CREATE OR REPLACE FUNCTION _rollback_locked_orders(
    p_user_id uuid, p_order_ids uuid[], p_reason text, p_mode text,
    p_transaction_id uuid, p_started timestamptz, p_extra jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_n           integer := cardinality(p_order_ids);
    v_operation   uuid := _batch_id();
    -- Stored as text a terminal cannot act on (it is shown by psql, reports and BI tools).
    v_reason      text := _printable(p_reason);
    v_breaker     circuit_breaker;
    v_policy      approval_policy;
    v_claim       jsonb;
    v_refunded    numeric;
    v_level       integer;
    v_why         jsonb;
    v_request     uuid;
    v_order       uuid;
    v_violations  jsonb;
    v_result      jsonb;
    v_operator    text;
    v_rollback_id uuid := gen_random_uuid();
    v_now         timestamptz;
    v_cash        numeric;
    v_margin      numeric;
    v_transfers   integer;
    v_profiles    integer;
    v_positions   integer;
    v_orders      integer;
    v_duration    bigint;
    v_drill       boolean;
BEGIN
    LOCK TABLE circuit_breaker IN ROW SHARE MODE;
    IF current_setting('transaction_isolation') = 'read committed' THEN
        SELECT * INTO v_breaker FROM circuit_breaker;
    ELSE
        -- A snapshot older than the switch: locking the row raises a serialization failure
        -- when it changed since, and the client's retry reads it open.
        SELECT * INTO v_breaker FROM circuit_breaker FOR SHARE;
    END IF;
    IF v_breaker.open THEN
        RETURN _refusal('breaker_open',
            format('the circuit breaker is open since %s: %s; nothing was rolled back (a person closes it with a reason)',
                   to_char(v_breaker.since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), v_breaker.reason),
            jsonb_build_object('breaker', jsonb_build_object('since', v_breaker.since, 'reason', v_breaker.reason,
                                                             'source', v_breaker.source, 'opened_by', v_breaker.opened_by)));
    END IF;

    SELECT * INTO v_policy FROM approval_policy;
    IF v_policy.enabled THEN
        -- A batch approval covers the groups inside its scope too.
        v_claim := CASE WHEN v_operation IS NOT NULL
                        THEN _claim_approval(v_operation, ARRAY['batch', 'group'], NULL) END;
        IF v_claim ? 'error_code' THEN
            RETURN v_claim;
        ELSIF v_claim IS NOT NULL THEN
            IF v_reason IS DISTINCT FROM v_claim ->> 'reason' THEN
                RETURN _refusal('approval_required', 'the approval covers another reason',
                                jsonb_build_object('approval_id', v_claim -> 'approval_id'));
            END IF;
            -- One primary-key probe per order: a query over the request's rows would read
            -- all of them (a whole batch's) on every call, as the planner sees one request.
            v_request := (v_claim ->> 'approval_id')::uuid;
            FOREACH v_order IN ARRAY p_order_ids LOOP
                PERFORM 1 FROM approval_orders a
                WHERE a.request_id = v_request AND a.order_id = v_order AND a.user_id = p_user_id;
                IF NOT FOUND THEN
                    RETURN _refusal('approval_required',
                        'an order here is outside the approved scope: a changed set of orders needs a new approval',
                        jsonb_build_object('approval_id', v_claim -> 'approval_id'));
                END IF;
            END LOOP;
            p_extra := p_extra || jsonb_build_object('approval_id', v_claim -> 'approval_id');
        ELSIF NOT coalesce((SELECT is_drill FROM profiles WHERE id = p_user_id), false) THEN
            -- Unapproved: one login's budget, taken one call at a time under its row of
            -- approval_budget_locks (see migration 19). (A drill account's money is practice:
            -- the sandbox's drills roll it back without a second person.)
            INSERT INTO approval_budget_locks AS b (login, charged_at) VALUES (session_user::text, clock_timestamp())
            ON CONFLICT (login) DO UPDATE SET charged_at = excluded.charged_at;
            SELECT coalesce(sum(total_cost), 0) INTO v_refunded FROM orders
            WHERE id = ANY (p_order_ids) AND user_id = p_user_id AND status = 'executed';
            v_level := _open_incident_level();
            IF v_policy.level3_batches AND v_level >= 3 AND v_operation IS NOT NULL AND EXISTS (
                    SELECT 1 FROM unapproved_rollbacks u
                    WHERE u.login = session_user::text AND u.operation = v_operation) THEN
                v_why := jsonb_build_array('every batch rollback at Level 3 needs a second person');
            ELSE
                v_why := _approval_reasons_at(v_policy, v_level,
                                              CASE p_mode WHEN 'transaction' THEN 'group' ELSE 'single' END,
                                              v_n, v_refunded, v_operation);
            END IF;
            IF jsonb_array_length(v_why) > 0 THEN
                RETURN _refusal('approval_required',
                    'a second person must approve this first: ' || (SELECT string_agg(r, '; ') FROM jsonb_array_elements_text(v_why) AS r),
                    jsonb_build_object('reasons', v_why));
            END IF;
            INSERT INTO unapproved_rollbacks (operation, orders, refunded)
            VALUES (v_operation, v_n, v_refunded);
        END IF;
    END IF;

    -- The money. Timestamps are taken when it happens (clock_timestamp(), after the
    -- caller's locks), never before the execution they undo. The change-log triggers
    -- record what this statement does to orders and positions (migration 13).
    v_operator := _operator();
    v_now := clock_timestamp();
    WITH reversed AS (
        INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, reverses_id)
        SELECT t.user_id, t.credit_account, t.debit_account, t.amount, 'reversal', t.order_id, t.id
        FROM ledger_transfers t
        -- The user is checked on the rows found by order, not looked up: as "user_id = $1",
        -- the generic plan ANDed the orders' index with the user's, which reads every
        -- transfer (order, position) the user ever had. So below too.
        WHERE t.order_id = ANY (p_order_ids) AND t.reverses_id IS NULL AND t.user_id IS NOT DISTINCT FROM p_user_id
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
        WHERE order_id = ANY (p_order_ids) AND user_id IS NOT DISTINCT FROM p_user_id AND status = 'open'
        RETURNING margin_used
    ), marked AS (
        -- failure_reason is left as it was: it is forensic evidence.
        UPDATE orders
        SET status = 'rolled_back', rolled_back_at = greatest(v_now, executed_at), rolled_back_reason = v_reason,
            updated_at = v_now
        WHERE id = ANY (p_order_ids) AND user_id IS NOT DISTINCT FROM p_user_id AND status = 'executed'
        RETURNING id, executed_at, commission, total_cost
    ), daily AS (
        INSERT INTO daily_pnl_tracking AS d (user_id, trading_date, orders_rolled_back, commission_refunded)
        SELECT p_user_id, (m.executed_at AT TIME ZONE 'UTC')::date, count(*), sum(m.commission)
        FROM marked m GROUP BY 2
        ON CONFLICT (user_id, trading_date) DO UPDATE
        SET orders_rolled_back = d.orders_rolled_back + excluded.orders_rolled_back,
            commission_refunded = d.commission_refunded + excluded.commission_refunded
    ), drill AS (
        SELECT coalesce(bool_or(is_drill), false) AS is_drill FROM profile
    ), audit AS (
        INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, batch_id, mode,
                                     transaction_id, operator, duration_us, is_drill, details)
        SELECT m.id, p_user_id, 'order_rolled_back', v_rollback_id, v_operation, p_mode, p_transaction_id,
               v_operator, (extract(epoch FROM clock_timestamp() - p_started) * 1000000)::bigint, dr.is_drill,
               -- The rest of the story is on the order row, which is never deleted.
               jsonb_build_object('reason', v_reason, 'refunded', _money(m.total_cost))
        FROM marked m, drill dr
        RETURNING duration_us
    )
    SELECT s.cash, s.margin, s.n, (SELECT count(*) FROM profile), (SELECT count(*) FROM closed),
           (SELECT count(*) FROM marked), (SELECT max(duration_us) FROM audit), (SELECT is_drill FROM drill)
    INTO v_cash, v_margin, v_transfers, v_profiles, v_positions, v_orders, v_duration, v_drill
    FROM sums s;

    -- The caller checked every one of these under its locks; a difference means a row
    -- changed under us (a position closed at the same moment): retry the whole call.
    IF v_profiles <> 1 OR v_positions <> v_n OR v_orders <> v_n THEN
        RAISE EXCEPTION 'rollback of % order(s) touched % profile(s), % position(s), % order(s)',
            v_n, v_profiles, v_positions, v_orders
            USING ERRCODE = 'serialization_failure';
    END IF;

    v_result := jsonb_build_object(
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
    IF v_claim IS NOT NULL THEN
        PERFORM _mark_approval_used(v_claim);
    END IF;
    -- Practice (sandbox breaker-drill): an order of a drill account placed under a key
    -- 'breaker-drill-…' fails its post-check on purpose, without touching any money: the
    -- rollback stands, the failed post-check is recorded and opens the breaker, and the next
    -- rollback is refused (see migration 18). Only a drill account's rollback looks.
    IF v_drill AND EXISTS (
        SELECT 1 FROM orders o
        WHERE o.id = ANY (p_order_ids) AND starts_with(o.idempotency_key, 'breaker-drill-')) THEN
        v_violations := jsonb_build_array(jsonb_build_object(
            'check_name', 'breaker_drill', 'user_id', p_user_id,
            'detail', 'a drill order whose post-check is made to fail (sandbox breaker-drill)'));
        PERFORM record_rollback_failure(p_order_ids[1], p_user_id, 'postcheck_failed',
                                        jsonb_build_object('violations', v_violations, 'orders', p_order_ids));
        v_result := v_result || jsonb_build_object('postcheck_failed', true, 'violations', v_violations,
                                                   'breaker_opened', true);
    END IF;
    RETURN v_result;
END
$$;


DROP FUNCTION _bad_reversals(uuid[], pg_snapshot, bigint[]);
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
REVOKE EXECUTE ON FUNCTION _bad_reversals(uuid[], pg_snapshot, bigint[]) FROM PUBLIC;

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

RESET ROLE;
