-- What became of an idempotency key: the gateway asks before it retries an order.
CREATE FUNCTION order_by_idempotency_key(p_user_id uuid, p_idempotency_key text)
RETURNS TABLE (order_id uuid, status text, executed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT o.id, o.status::text, o.executed_at FROM orders o
    WHERE o.user_id = p_user_id AND o.idempotency_key = p_idempotency_key
$$;
REVOKE EXECUTE ON FUNCTION order_by_idempotency_key(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION order_by_idempotency_key(uuid, text) TO incident_engine;
