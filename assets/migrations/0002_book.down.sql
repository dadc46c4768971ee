-- Financial history is never deleted: undoing this migration is refused while the book
-- holds any account or order. Archive the database (pg_dump) and empty it first.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM profiles) OR EXISTS (SELECT 1 FROM orders) THEN
        RAISE EXCEPTION 'refusing to drop the order book: it holds accounts or orders'
            USING HINT = 'financial history is never deleted; archive it with pg_dump and empty it first';
    END IF;
END
$$;

-- The record of every maintenance switch and the per-day figures are history too.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM maintenance_log) THEN
        RAISE EXCEPTION 'refusing to drop maintenance_log: it records who switched maintenance mode and when'
            USING HINT = 'the maintenance record is never deleted; archive it with pg_dump first';
    END IF;
    IF EXISTS (SELECT 1 FROM daily_pnl_tracking) THEN
        RAISE EXCEPTION 'refusing to drop daily_pnl_tracking: it holds daily figures'
            USING HINT = 'financial history is never deleted; archive it with pg_dump first';
    END IF;
END
$$;

SET LOCAL ROLE incident_owner;
DROP TABLE maintenance_log;
DROP TABLE system_settings;
DROP TABLE daily_pnl_tracking;
ALTER TABLE orders DROP CONSTRAINT fk_orders_position_id;
DROP TABLE positions;
DROP FUNCTION positions_owner_matches_order();
DROP TABLE orders;
DROP FUNCTION orders_owner_never_changes();
DROP TABLE profiles;
DROP TABLE instruments;

DROP DOMAIN key_text;
DROP DOMAIN reason_text;
DROP DOMAIN position_state;
DROP DOMAIN trade_side;
DROP DOMAIN order_kind;
DROP DOMAIN order_status;
DROP DOMAIN count_nonneg;
DROP DOMAIN money_positive;
DROP DOMAIN money_nonneg;
RESET ROLE;
