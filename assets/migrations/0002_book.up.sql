-- The order book: accounts, instruments, orders, positions, daily figures, settings.
SET LOCAL ROLE incident_owner;

-- Single-column rules are domains rather than table CHECKs: PostgreSQL keeps a domain's
-- compiled constraint cached and checks it only for the columns a statement assigns,
-- whereas every table CHECK is re-read and re-evaluated on every UPDATE of the row
-- (measured: a tenth of a rollback's server time went to re-reading CHECK expressions).
CREATE DOMAIN money_nonneg AS numeric(20,8) CHECK (VALUE >= 0);
CREATE DOMAIN money_positive AS numeric(20,8) CHECK (VALUE > 0);
CREATE DOMAIN count_nonneg AS integer CHECK (VALUE >= 0);
CREATE DOMAIN order_status AS text
    CHECK (VALUE IN ('pending', 'executing', 'executed', 'failed', 'cancelled', 'rolled_back'));
CREATE DOMAIN order_kind AS text CHECK (VALUE IN ('market', 'limit', 'stop'));
CREATE DOMAIN trade_side AS text CHECK (VALUE IN ('buy', 'sell'));
CREATE DOMAIN position_state AS text CHECK (VALUE IN ('open', 'closed', 'rolled_back'));
CREATE DOMAIN reason_text AS text CHECK (length(VALUE) BETWEEN 1 AND 1000);
CREATE DOMAIN key_text AS text CHECK (length(VALUE) BETWEEN 1 AND 200);

CREATE TABLE instruments (
    symbol          text PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9]{3,12}$'),
    margin_rate     numeric(20,8) NOT NULL CHECK (margin_rate > 0 AND margin_rate <= 1),
    commission_rate numeric(20,8) NOT NULL CHECK (commission_rate >= 0 AND commission_rate < 1),
    tradable        boolean NOT NULL DEFAULT true
);

INSERT INTO instruments (symbol, margin_rate, commission_rate) VALUES
    ('EURUSD', 0.02, 0.0002),
    ('GBPUSD', 0.02, 0.0002),
    ('USDJPY', 0.02, 0.0002),
    ('USDCHF', 0.02, 0.0002),
    ('AUDUSD', 0.02, 0.0002),
    ('USDCAD', 0.02, 0.0002),
    ('NZDUSD', 0.02, 0.0002),
    ('EURGBP', 0.02, 0.0002);

-- balance and margin_used are caches of the ledger (see ledger_transfers); ledger_audit()
-- proves they agree.
CREATE TABLE profiles (
    id          uuid PRIMARY KEY,
    balance     money_nonneg NOT NULL DEFAULT 0,
    margin_used money_nonneg NOT NULL DEFAULT 0,
    is_drill    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL CONSTRAINT fk_orders_user_id REFERENCES profiles (id),
    symbol             text NOT NULL CONSTRAINT fk_orders_symbol REFERENCES instruments (symbol),
    order_type         order_kind NOT NULL,
    side               trade_side NOT NULL,
    quantity           money_positive NOT NULL,
    price              money_positive,
    status             order_status NOT NULL,
    transaction_id     uuid,
    idempotency_key    key_text NOT NULL,
    commission         money_nonneg,
    execution_price    money_positive,
    total_cost         money_nonneg,
    failure_reason     text,
    executed_at        timestamptz,
    rolled_back_at     timestamptz,
    rolled_back_reason reason_text,
    position_id        uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_orders_user_idempotency_key UNIQUE (user_id, idempotency_key),
    -- an executed (or rolled back) order carries everything its execution did
    CONSTRAINT orders_execution_recorded CHECK (
        status NOT IN ('executed', 'rolled_back')
        OR (execution_price IS NOT NULL AND commission IS NOT NULL AND total_cost IS NOT NULL
            AND position_id IS NOT NULL AND executed_at IS NOT NULL)),
    -- an order that never executed moved no money and holds no position
    CONSTRAINT orders_unexecuted_is_empty CHECK (
        status IN ('executed', 'rolled_back')
        OR (position_id IS NULL AND executed_at IS NULL AND total_cost IS NULL)),
    CONSTRAINT orders_rollback_recorded CHECK (
        (status = 'rolled_back') = (rolled_back_at IS NOT NULL)
        AND (status = 'rolled_back') = (rolled_back_reason IS NOT NULL)),
    CONSTRAINT orders_rollback_after_execution CHECK (rolled_back_at >= executed_at),
    CONSTRAINT orders_failed_has_reason CHECK (status <> 'failed' OR failure_reason IS NOT NULL)
) WITH (fillfactor = 90);

CREATE TABLE positions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL CONSTRAINT fk_positions_user_id REFERENCES profiles (id),
    order_id        uuid NOT NULL,
    symbol          text NOT NULL,
    side            trade_side NOT NULL,
    quantity        money_positive NOT NULL,
    entry_price     money_positive NOT NULL,
    margin_used     money_nonneg NOT NULL,
    commission_paid money_nonneg NOT NULL DEFAULT 0,
    stop_loss       money_positive,
    take_profit     money_positive,
    transaction_id  uuid,
    status          position_state NOT NULL DEFAULT 'open',
    opened_at       timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    -- one position per order: an order can never be half rolled back
    CONSTRAINT uq_positions_order_id UNIQUE (order_id),
    CONSTRAINT fk_positions_order_id FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT positions_closed_when_not_open CHECK ((status = 'open') = (closed_at IS NULL))
) WITH (fillfactor = 90);

-- A position belongs to its order's user, and neither ever changes hands. Checked by
-- triggers on the columns themselves (not by a second unique index on orders), so a
-- rollback, which changes neither, pays nothing for it.
CREATE FUNCTION positions_owner_matches_order() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'the owner or order of a position never changes'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = NEW.order_id AND o.user_id = NEW.user_id) THEN
        RAISE EXCEPTION 'position % belongs to user %, not to the user of order %', NEW.id, NEW.user_id, NEW.order_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER positions_owner_matches_order
    BEFORE INSERT OR UPDATE OF user_id, order_id ON positions
    FOR EACH ROW EXECUTE FUNCTION positions_owner_matches_order();

CREATE FUNCTION orders_owner_never_changes() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'the user of an order never changes' USING ERRCODE = 'check_violation';
END
$$;
CREATE TRIGGER orders_owner_never_changes
    BEFORE UPDATE OF user_id ON orders
    FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION orders_owner_never_changes();

-- Circular with positions.order_id, so checked at commit.
ALTER TABLE orders ADD CONSTRAINT fk_orders_position_id
    FOREIGN KEY (position_id) REFERENCES positions (id) DEFERRABLE INITIALLY DEFERRED;

CREATE INDEX idx_orders_user_id_status ON orders (user_id, status);
CREATE INDEX idx_orders_symbol_side ON orders (symbol, side);
CREATE INDEX idx_orders_created_at ON orders (created_at);
CREATE INDEX idx_orders_transaction_id ON orders (transaction_id) WHERE transaction_id IS NOT NULL;
CREATE INDEX idx_positions_user_id_symbol ON positions (user_id, symbol);
CREATE INDEX idx_positions_status ON positions (status);


CREATE TABLE daily_pnl_tracking (
    user_id             uuid NOT NULL REFERENCES profiles (id),
    trading_date        date NOT NULL,
    orders_executed     count_nonneg NOT NULL DEFAULT 0,
    orders_rolled_back  count_nonneg NOT NULL DEFAULT 0,
    commission_paid     money_nonneg NOT NULL DEFAULT 0,
    commission_refunded money_nonneg NOT NULL DEFAULT 0,
    realized_pnl        numeric(20,8) NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, trading_date)
);

-- One row: the switch that stops new orders during an incident.
CREATE TABLE system_settings (
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
    maintenance_mode   boolean NOT NULL DEFAULT false,
    maintenance_reason text,
    maintenance_since  timestamptz,
    maintenance_by     text,
    CHECK (maintenance_mode = (maintenance_since IS NOT NULL))
);
INSERT INTO system_settings DEFAULT VALUES;

CREATE TABLE maintenance_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enabled  boolean NOT NULL,
    reason   text NOT NULL,
    operator text NOT NULL,
    db_user  text NOT NULL DEFAULT session_user,
    at       timestamptz NOT NULL DEFAULT now()
);

RESET ROLE;
