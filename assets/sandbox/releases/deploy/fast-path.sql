-- The fast path: no idempotency lookup before an execution. Each attempt gets a key of its
-- own ("<key>-try<n>"), so the unique key never meets a retry: the defect that executed
-- every retry of the burst again. The orders it executes are tagged in execution_route.
ALTER TABLE orders ADD COLUMN execution_route text;
CREATE INDEX idx_orders_execution_route ON orders (execution_route) WHERE execution_route IS NOT NULL;

ALTER FUNCTION execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid)
    RENAME TO execute_order_checked;

CREATE FUNCTION execute_order_atomic(
    p_user_id uuid, p_symbol text, p_order_type text, p_side text, p_quantity numeric,
    p_price numeric, p_idempotency_key text, p_transaction_id uuid DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_attempt bigint;
    v_answer  jsonb;
BEGIN
    SELECT count(*) INTO v_attempt FROM orders
    WHERE user_id = p_user_id AND starts_with(idempotency_key, p_idempotency_key || '-try');
    v_answer := execute_order_checked(p_user_id, p_symbol, p_order_type, p_side, p_quantity, p_price,
                                      p_idempotency_key || '-try' || v_attempt, p_transaction_id);
    IF (v_answer ->> 'success')::boolean THEN
        UPDATE orders SET execution_route = 'fast' WHERE id = (v_answer ->> 'order_id')::uuid;
    END IF;
    RETURN v_answer;
END
$$;
REVOKE EXECUTE ON FUNCTION execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid) TO incident_engine;
