DROP FUNCTION order_by_idempotency_key(uuid, text);
