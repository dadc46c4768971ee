-- The checked execution back under its own name; the fast path's column and index go (the
-- console archives the column's values before this runs).
DROP FUNCTION execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid);
ALTER FUNCTION execute_order_checked(uuid, text, text, text, numeric, numeric, text, uuid)
    RENAME TO execute_order_atomic;
DROP INDEX idx_orders_execution_route;
ALTER TABLE orders DROP COLUMN execution_route;
