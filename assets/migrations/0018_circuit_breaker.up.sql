-- The circuit breaker (issue 12: "a breaker that stops a rollback making things worse").
--
-- While it is open every rollback is refused with breaker_open, whoever calls and however
-- (the console, the CLI, psql through the contract's functions): the check sits in
-- _rollback_locked_orders, the step every rollback function takes before it moves money.
-- A failed post-check opens it on its own (the audit row 'postcheck_failed' that
-- rollback_with_postcheck or record_rollback_failure writes); the client opens it for a
-- ledger audit violation or too many failures during a batch (open_breaker). A person
-- closes it, with a reason. Every opening and closing is in breaker_log (append-only).
--
-- The fence is maintenance mode's: rollbacks hold ROW SHARE on circuit_breaker while they
-- read it, the switch takes EXCLUSIVE, so a rollback that read "closed" has committed or
-- rolled back before the breaker opens, and none that starts after it opened gets through.
SET LOCAL ROLE incident_owner;

CREATE TABLE circuit_breaker (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    open            boolean NOT NULL DEFAULT false,
    since           timestamptz,
    reason          text,
    source          text,
    opened_by       text,
    opened_by_login text,
    CHECK (open = (since IS NOT NULL) AND open = (reason IS NOT NULL))
);
INSERT INTO circuit_breaker DEFAULT VALUES;

CREATE TABLE breaker_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    open       boolean NOT NULL,
    reason     text NOT NULL,
    source     text NOT NULL CHECK (source IN ('person', 'postcheck_failed', 'ledger_audit', 'failures')),
    operator   text NOT NULL,
    login      text NOT NULL DEFAULT session_user
);
CREATE TRIGGER breaker_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON breaker_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER circuit_breaker_no_delete BEFORE DELETE OR TRUNCATE ON circuit_breaker
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Opens (or closes) the breaker, logged; the caller's checks are done.
CREATE FUNCTION _switch_breaker(p_open boolean, p_reason text, p_source text)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_was boolean;
BEGIN
    -- Waits for the rollbacks in flight (ROW SHARE) and keeps new ones out until commit.
    LOCK TABLE circuit_breaker IN EXCLUSIVE MODE;
    SELECT open INTO v_was FROM circuit_breaker FOR UPDATE;
    IF v_was = p_open THEN
        RETURN jsonb_build_object('success', true, 'open', p_open, 'changed', false,
                                  'since', (SELECT since FROM circuit_breaker), 'reason', (SELECT reason FROM circuit_breaker));
    END IF;
    UPDATE circuit_breaker SET open = p_open,
        since = CASE WHEN p_open THEN clock_timestamp() END,
        reason = CASE WHEN p_open THEN p_reason END,
        source = CASE WHEN p_open THEN p_source END,
        opened_by = CASE WHEN p_open THEN _operator() END,
        opened_by_login = CASE WHEN p_open THEN session_user::text END;
    INSERT INTO breaker_log (open, reason, source, operator) VALUES (p_open, p_reason, p_source, _operator());
    PERFORM pg_notify('circuit_breaker', CASE WHEN p_open THEN 'open' ELSE 'closed' END);
    RETURN jsonb_build_object('success', true, 'open', p_open, 'changed', true, 'reason', p_reason,
                              'source', p_source, 'operator', _operator(), 'login', session_user::text);
END
$$;

-- A person or the client opens the breaker: source 'person', 'ledger_audit' or 'failures'.
CREATE FUNCTION open_breaker(p_reason text, p_source text DEFAULT 'person')
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;
    IF p_source IS NULL OR p_source NOT IN ('person', 'ledger_audit', 'failures') THEN
        RETURN _refusal('invalid_argument', 'the source is person, ledger_audit or failures');
    END IF;
    RETURN _switch_breaker(true, _printable(p_reason), p_source);
END
$$;

-- A person closes it, with a reason: rollbacks are accepted again.
CREATE FUNCTION close_breaker(p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;
    RETURN _switch_breaker(false, _printable(p_reason), 'person');
END
$$;

-- A failed post-check opens the breaker in the same transaction that records it.
CREATE FUNCTION _breaker_on_failed_postcheck()
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

-- Every rollback passes here before it moves money (the functions that roll back call
-- _rollback_locked_orders by name): the breaker's check goes in front of the step as it was.
ALTER FUNCTION _rollback_locked_orders(uuid, uuid[], text, text, uuid, timestamptz, jsonb)
    RENAME TO _rollback_locked_orders_unguarded;

CREATE FUNCTION _rollback_locked_orders(
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

REVOKE EXECUTE ON FUNCTION _switch_breaker(boolean, text, text), open_breaker(text, text), close_breaker(text),
    _breaker_on_failed_postcheck(), _rollback_locked_orders(uuid, uuid[], text, text, uuid, timestamptz, jsonb),
    _rollback_locked_orders_unguarded(uuid, uuid[], text, text, uuid, timestamptz, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION open_breaker(text, text), close_breaker(text) TO incident_operator;
GRANT SELECT ON circuit_breaker, breaker_log TO incident_viewer;

RESET ROLE;
