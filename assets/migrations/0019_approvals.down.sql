-- Back to 0018: no four-eyes approval. Refused once a request was filed or an unapproved
-- rollback counted (the approval log is never dropped).
SET LOCAL ROLE incident_owner;

LOCK TABLE approval_requests, approval_log, unapproved_rollbacks IN EXCLUSIVE MODE;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM approval_log) OR EXISTS (SELECT 1 FROM unapproved_rollbacks) THEN
        RAISE EXCEPTION 'refusing to undo migration 19: the approval log records requests or rollbacks'
            USING HINT = 'the approval log is never dropped; keep migration 19';
    END IF;
END
$$;

-- The breaker's step, as migration 18 left it.
CREATE OR REPLACE FUNCTION _rollback_locked_orders(
    p_user_id uuid, p_order_ids uuid[], p_reason text, p_mode text,
    p_transaction_id uuid, p_started timestamptz, p_extra jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_breaker    circuit_breaker;
    v_result     jsonb;
    v_violations jsonb;
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
    v_result := _rollback_locked_orders_unguarded(p_user_id, p_order_ids, p_reason, p_mode, p_transaction_id,
                                                  p_started, p_extra);
    -- Practice (sandbox breaker-drill): an order of a drill account placed under a key
    -- 'breaker-drill-…' fails its post-check on purpose, without touching any money: the
    -- rollback stands, the failed post-check is recorded and opens the breaker, and the next
    -- rollback is refused. (A real account's post-check against its ledger is
    -- rollback_with_postcheck's, and a batch's proof's: summing an account's ledger on every
    -- rollback here made rollbacks three times slower.)
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

CREATE OR REPLACE FUNCTION close_breaker(p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;
    RETURN _switch_breaker(false, _printable(p_reason), 'person');
END
$$;

DROP FUNCTION release_rollback(text, text, boolean, boolean, uuid);
ALTER FUNCTION _release_rollback_unguarded(text, text, boolean, boolean, uuid) RENAME TO release_rollback;
GRANT EXECUTE ON FUNCTION release_rollback(text, text, boolean, boolean, uuid) TO incident_operator;

DROP FUNCTION _mark_approval_used(jsonb), _claim_approval(uuid, text[], text), cancel_approval(uuid, text),
    decide_approval(uuid, boolean, text, text),
    request_approval(text, uuid, uuid[], uuid[], text, text, numeric, integer, text, jsonb),
    approval_needed(text, uuid[], uuid[], integer, uuid), set_approval_policy(jsonb), approval_policy_show(),
    _approval_reasons(text, integer, numeric, integer, uuid), _unapproved_used(integer), _open_incident_level(),
    _release_scope(text, bigint[], jsonb), _breaker_scope();
DROP TABLE approval_budget_locks, unapproved_rollbacks, approval_log, approval_orders, approval_requests, approval_policy;

RESET ROLE;
