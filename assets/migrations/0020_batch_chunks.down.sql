-- Back to 0019: no chunked rollbacks (each order rolled back is in the audit log as
-- rollback_execute_order_atomic wrote it; nothing else to undo).
SET LOCAL ROLE incident_owner;

DROP FUNCTION rollback_orders(uuid[], uuid[], text);

RESET ROLE;
