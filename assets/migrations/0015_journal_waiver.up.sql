-- Acting without the incident's journal, on the record (issue 9: "An unwritable journal does
-- not stop money from moving").
--
-- The console and the CLI write a rollback's intent to the incident's journal, synced to
-- disk, before any money moves, and refuse the rollback when they cannot. The commander may
-- decide to act anyway (`--no-journal`); that decision is then written here first, in the
-- audit log: one row per order with action 'journal_waived', the operator and the login as
-- on every row, the rollback's operation id in batch_id (where its own audit rows will
-- carry it) and the reason. The rollback goes ahead only once this is committed.
SET LOCAL ROLE incident_owner;

-- The new value joins the old ones. NOT VALID: every existing row was checked against
-- the old list, a subset of this one, when it was written; re-checking them would scan
-- the whole audit log inside the migration for nothing.
ALTER DOMAIN audit_action DROP CONSTRAINT audit_action_check;
ALTER DOMAIN audit_action ADD CONSTRAINT audit_action_check
    CHECK (VALUE IN ('order_rolled_back', 'rollback_failed', 'postcheck_failed', 'journal_waived')) NOT VALID;

-- Records the waiver for each (order, user) pair of p_order_ids and p_user_ids, in one
-- statement. Refused, writing nothing, unless every order exists and belongs to its user
-- (as record_rollback_failure), the mode is one a rollback has and a reason of 1 to 1000
-- characters is given; the reason is kept without terminal control characters. Rows for
-- the same pair twice in one call are written once.
CREATE FUNCTION record_journal_waiver(p_operation_id uuid, p_order_ids uuid[], p_user_ids uuid[],
                                      p_mode text, p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_pairs    integer;
    v_found    integer;
    v_recorded integer;
    v_waiver   uuid := gen_random_uuid();
BEGIN
    IF p_operation_id IS NULL OR p_order_ids IS NULL OR p_user_ids IS NULL
       OR p_mode IS NULL OR p_mode NOT IN ('single', 'transaction', 'batch') THEN
        RETURN _refusal('invalid_argument',
                        'an operation id, the orders and their users, and a mode of single, transaction or batch are required');
    END IF;
    IF cardinality(p_order_ids) <> cardinality(p_user_ids) OR cardinality(p_order_ids) NOT BETWEEN 1 AND 100000 THEN
        RETURN _refusal('invalid_argument', 'between 1 and 100000 orders, each with its user');
    END IF;
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;

    SELECT count(*), count(o.id) INTO v_pairs, v_found
    FROM (SELECT DISTINCT w.order_id, w.user_id FROM unnest(p_order_ids, p_user_ids) AS w(order_id, user_id)) w
    LEFT JOIN orders o ON o.id = w.order_id AND o.user_id = w.user_id;
    IF v_found <> v_pairs THEN
        RETURN _refusal('order_not_found', 'an order does not exist or is not its user''s',
                        jsonb_build_object('unknown', v_pairs - v_found));
    END IF;

    INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, batch_id, operator, is_drill, details)
    SELECT w.order_id, w.user_id, 'journal_waived', v_waiver, p_operation_id, _operator(), p.is_drill,
           jsonb_build_object('reason', _printable(p_reason), 'mode', p_mode, 'operation', p_operation_id,
                              'journal', 'waived')
    FROM (SELECT DISTINCT w.order_id, w.user_id FROM unnest(p_order_ids, p_user_ids) AS w(order_id, user_id)) w
    JOIN profiles p ON p.id = w.user_id
    ORDER BY w.order_id;
    GET DIAGNOSTICS v_recorded = ROW_COUNT;

    RETURN jsonb_build_object('success', true, 'recorded', v_recorded, 'operation', p_operation_id,
                              'operator', _operator(), 'login', session_user::text);
END
$$;

REVOKE EXECUTE ON FUNCTION record_journal_waiver(uuid, uuid[], uuid[], text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_journal_waiver(uuid, uuid[], uuid[], text, text) TO incident_operator;

RESET ROLE;
