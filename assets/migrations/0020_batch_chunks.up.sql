-- Batches in chunks (issue 13: "batches that amortize commits and round trips").
--
-- rollback_orders rolls back many orders in one call and one transaction, so a batch pays
-- one round trip and one commit (one WAL flush) per chunk instead of per order. Each order
-- is rolled back by rollback_execute_order_atomic itself, so every guard (the reason, the
-- order's lock and status, the circuit breaker, four-eyes approval under the session's
-- operation, the ledger's unique reversal) stays on one code path.
--
-- Each order runs in its own subtransaction: a business refusal changes nothing and is
-- answered, as today; a retryable error (serialization failure, deadlock, lock timeout)
-- undoes only that order's subtransaction, and the order is answered {retry: true,
-- sqlstate} for the client to send again after the chunk commits. Nothing else is caught:
-- any other error (a cancel, a statement timeout, a bug) rolls the whole chunk back, so
-- none of its orders is done and the client knows it.
--
-- Once the breaker refuses an order, no further order of the chunk is tried (each would be
-- refused too): they are answered {attempted: false}.
--
-- Subtransactions: each order's subtransaction writes, so it takes a transaction id of its
-- own; past 64 in one transaction other sessions' snapshots overflow to pg_subtrans. The
-- client's chunks stay below that (ops::batch's default is 50); the cap here is a bound on
-- one call's work, not a recommendation.
SET LOCAL ROLE incident_owner;

CREATE FUNCTION rollback_orders(p_order_ids uuid[], p_user_ids uuid[], p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_n       integer := pg_catalog.cardinality(p_order_ids);
    v_refusal jsonb;
    v_result  jsonb;
    v_results jsonb[] := ARRAY[]::jsonb[];
    v_stopped boolean := false;
    v_done    integer := 0;
BEGIN
    IF p_order_ids IS NULL OR p_user_ids IS NULL OR v_n < 1 OR v_n > 1000
       OR pg_catalog.array_ndims(p_order_ids) <> 1 OR pg_catalog.array_ndims(p_user_ids) <> 1
       OR pg_catalog.cardinality(p_user_ids) <> v_n THEN
        RETURN _refusal('invalid_argument', 'between 1 and 1000 orders, each with its user (two arrays of the same length)');
    END IF;
    -- Answered once for the call rather than once per order: nothing is tried.
    v_refusal := _reason_refusal(p_reason);
    IF v_refusal IS NOT NULL THEN
        RETURN v_refusal;
    END IF;

    -- Subscripts from the lower bound: '[0:1]={…}' arrays are one-dimensional too.
    FOR i IN pg_catalog.array_lower(p_order_ids, 1) .. pg_catalog.array_upper(p_order_ids, 1) LOOP
        IF v_stopped THEN
            v_result := jsonb_build_object('success', false, 'attempted', false, 'order_id', p_order_ids[i]);
        ELSE
            BEGIN
                v_result := rollback_execute_order_atomic(
                    p_order_ids[i],
                    p_user_ids[i - pg_catalog.array_lower(p_order_ids, 1) + pg_catalog.array_lower(p_user_ids, 1)],
                    p_reason);
            EXCEPTION WHEN serialization_failure OR deadlock_detected OR lock_not_available THEN
                -- Only this order's subtransaction is undone; its neighbours stand.
                v_result := jsonb_build_object('success', false, 'retry', true, 'sqlstate', SQLSTATE,
                                               'order_id', p_order_ids[i]);
            END;
            IF v_result ->> 'error_code' = 'breaker_open' THEN
                v_stopped := true;
            END IF;
            IF (v_result ->> 'success')::boolean THEN
                v_done := v_done + 1;
            END IF;
        END IF;
        v_results := pg_catalog.array_append(v_results, v_result);
    END LOOP;

    RETURN jsonb_build_object('success', true, 'orders', v_n, 'rolled_back', v_done,
                              'breaker_open', v_stopped, 'results', to_jsonb(v_results));
END
$$;

REVOKE EXECUTE ON FUNCTION rollback_orders(uuid[], uuid[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rollback_orders(uuid[], uuid[], text) TO incident_operator;

RESET ROLE;
