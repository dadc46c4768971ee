-- Back to 0020: the rollback's step in two functions, the indexes on status, the ledger's
-- foreign keys (validated again: the rows written meanwhile satisfy them, as the definer
-- functions that write them guarantee), _operator() in SQL, the breaker's statement trigger.
SET LOCAL ROLE incident_owner;

-- The money half of the step, as migration 14 left it (renamed by migration 18).
CREATE FUNCTION _rollback_locked_orders_unguarded(
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
    -- 0014: the reason is stored as text a terminal cannot act on (it is shown by psql,
    -- reports and BI tools, which do not sanitize).
    p_reason := _printable(p_reason);
    -- 0013: the change-log triggers record what this statement does to orders and
    -- positions; it writes no book_changes row of its own (called from a trigger, that row
    -- was kept beside theirs and counted twice).
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
    )
    SELECT s.cash, s.margin, s.n, (SELECT count(*) FROM profile), (SELECT count(*) FROM closed),
           (SELECT count(*) FROM marked), (SELECT max(duration_us) FROM audit)
    INTO v_cash, v_margin, v_transfers, v_profiles, v_positions, v_orders, v_duration
    FROM sums s;

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

REVOKE EXECUTE ON FUNCTION _rollback_locked_orders_unguarded(uuid, uuid[], text, text, uuid, timestamptz, jsonb)
    FROM PUBLIC;

-- The step as migration 19 left it.
CREATE OR REPLACE FUNCTION _rollback_locked_orders(
    p_user_id uuid, p_order_ids uuid[], p_reason text, p_mode text,
    p_transaction_id uuid, p_started timestamptz, p_extra jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_breaker    circuit_breaker;
    v_result     jsonb;
    v_violations jsonb;
    v_policy     approval_policy;
    v_operation  uuid := _batch_id();
    v_claim      jsonb;
    v_refunded   numeric;
    v_level      integer;
    v_why        jsonb;
    v_request    uuid;
    v_order      uuid;
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
            IF _printable(p_reason) IS DISTINCT FROM v_claim ->> 'reason' THEN
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
            -- approval_budget_locks (see there). (A drill account's money is practice: the
            -- sandbox's drills roll it back without a second person.)
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
                v_why := _approval_reasons(CASE p_mode WHEN 'transaction' THEN 'group' ELSE 'single' END,
                                           cardinality(p_order_ids), v_refunded, v_level, v_operation);
            END IF;
            IF jsonb_array_length(v_why) > 0 THEN
                RETURN _refusal('approval_required',
                    'a second person must approve this first: ' || (SELECT string_agg(r, '; ') FROM jsonb_array_elements_text(v_why) AS r),
                    jsonb_build_object('reasons', v_why));
            END IF;
            INSERT INTO unapproved_rollbacks (operation, orders, refunded)
            VALUES (v_operation, cardinality(p_order_ids), v_refunded);
        END IF;
    END IF;

    v_result := _rollback_locked_orders_unguarded(p_user_id, p_order_ids, p_reason, p_mode, p_transaction_id,
                                                  p_started, p_extra);
    IF (v_result ->> 'success')::boolean AND v_claim IS NOT NULL THEN
        PERFORM _mark_approval_used(v_claim);
    END IF;
    -- Practice (sandbox breaker-drill): see migration 18.
    IF (v_result ->> 'success')::boolean AND EXISTS (
        SELECT 1 FROM orders o JOIN profiles p ON p.id = o.user_id
        WHERE o.id = ANY (p_order_ids) AND p.is_drill AND starts_with(o.idempotency_key, 'breaker-drill-')) THEN
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

CREATE OR REPLACE FUNCTION _operator()
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN c.claim IS NULL OR c.claim = c.login THEN c.login
        WHEN EXISTS (SELECT 1 FROM operator_names n WHERE n.login = c.login AND n.operator = c.claim) THEN c.claim
        ELSE left(c.claim, greatest(200 - length(c.login) - 7, 1)) || ' (via ' || c.login || ')'
    END
    FROM (SELECT _claimed_operator() AS claim, session_user::text AS login) c
$$;

DROP TRIGGER order_audit_log_opens_breaker ON order_audit_log;
CREATE OR REPLACE FUNCTION _breaker_on_failed_postcheck()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE action = 'postcheck_failed') THEN
        PERFORM _switch_breaker(true,
            (SELECT format('post-check failed for order %s', min(order_id::text)) FROM new_rows WHERE action = 'postcheck_failed'),
            'postcheck_failed');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER order_audit_log_opens_breaker AFTER INSERT ON order_audit_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION _breaker_on_failed_postcheck();

-- Why work needs an approval, as migration 19 left it.
CREATE OR REPLACE FUNCTION _approval_reasons(p_kind text, p_orders integer, p_refunded numeric, p_level integer,
                                  p_operation uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_policy approval_policy;
    v_level  integer := greatest(coalesce(p_level, 0), _open_incident_level());
    v_used   record;
    v_new_op integer;
    v_why    jsonb := '[]';
BEGIN
    SELECT * INTO v_policy FROM approval_policy;
    IF NOT v_policy.enabled THEN
        RETURN v_why;
    END IF;
    IF p_kind = 'release_rollback' THEN
        IF v_policy.release_rollback THEN
            v_why := v_why || to_jsonb('every release rollback needs a second person'::text);
        END IF;
        RETURN v_why;
    END IF;
    IF p_kind = 'breaker_close' THEN
        IF v_policy.level3_breaker_close AND v_level >= 3 THEN
            v_why := v_why || to_jsonb('closing the circuit breaker at Level 3 needs a second person'::text);
        END IF;
        RETURN v_why;
    END IF;
    IF v_policy.level3_batches AND v_level >= 3 AND p_kind IN ('batch', 'group') THEN
        v_why := v_why || to_jsonb(format('every %s rollback at Level 3 needs a second person',
                                          CASE p_kind WHEN 'batch' THEN 'batch' ELSE 'group' END));
    END IF;
    IF p_orders > v_policy.batch_orders THEN
        v_why := v_why || to_jsonb(format('%s orders is more than the %s one person may roll back',
                                          p_orders, v_policy.batch_orders));
    END IF;
    IF p_refunded > v_policy.batch_refunded THEN
        v_why := v_why || to_jsonb(format('%s refunded is more than the %s one person may refund',
                                          _money(p_refunded), _money(v_policy.batch_refunded)));
    END IF;
    SELECT * INTO v_used FROM _unapproved_used(v_policy.window_minutes);
    v_new_op := CASE WHEN p_operation IS NOT NULL AND EXISTS (
                         SELECT 1 FROM unapproved_rollbacks u
                         WHERE u.login = session_user::text AND u.operation = p_operation
                           AND u.at > clock_timestamp() - make_interval(mins => v_policy.window_minutes))
                     THEN 0 ELSE 1 END;
    IF v_used.operations + v_new_op > v_policy.single_limit THEN
        v_why := v_why || to_jsonb(format('this login already made %s rollbacks without approval in %s minutes (limit %s)',
                                          v_used.operations, v_policy.window_minutes, v_policy.single_limit));
    ELSIF v_used.orders + p_orders > v_policy.batch_orders AND p_orders <= v_policy.batch_orders THEN
        v_why := v_why || to_jsonb(format('this login already rolled back %s orders without approval in %s minutes (limit %s)',
                                          v_used.orders, v_policy.window_minutes, v_policy.batch_orders));
    ELSIF v_used.refunded + p_refunded > v_policy.batch_refunded AND p_refunded <= v_policy.batch_refunded THEN
        v_why := v_why || to_jsonb(format('this login already refunded %s without approval in %s minutes (limit %s)',
                                          _money(v_used.refunded), v_policy.window_minutes, _money(v_policy.batch_refunded)));
    END IF;
    RETURN v_why;
END
$$;
DROP FUNCTION _approval_reasons_at(approval_policy, integer, text, integer, numeric, uuid);

DROP TRIGGER profiles_never_deleted ON profiles;
DROP TRIGGER profiles_no_truncate ON profiles;

ALTER TABLE ledger_transfers
    ADD CONSTRAINT ledger_transfers_user_id_fkey FOREIGN KEY (user_id) REFERENCES profiles (id),
    ADD CONSTRAINT ledger_transfers_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id),
    ADD CONSTRAINT ledger_transfers_reverses_id_fkey FOREIGN KEY (reverses_id) REFERENCES ledger_transfers (id);
ALTER TABLE daily_pnl_tracking
    ADD CONSTRAINT daily_pnl_tracking_user_id_fkey FOREIGN KEY (user_id) REFERENCES profiles (id);

DROP INDEX order_audit_log_created_at;
CREATE INDEX idx_order_audit_created_at ON order_audit_log (created_at);

ALTER TABLE orders SET (fillfactor = 90);
ALTER TABLE positions SET (fillfactor = 90);
CREATE INDEX idx_orders_user_id_status ON orders (user_id, status);
CREATE INDEX idx_positions_status ON positions (status);

RESET ROLE;
