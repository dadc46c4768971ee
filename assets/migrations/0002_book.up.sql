-- The order book: accounts, instruments, orders, positions, daily figures, settings.
SET LOCAL ROLE incident_owner;

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
    balance     numeric(20,8) NOT NULL DEFAULT 0 CHECK (balance >= 0),
    margin_used numeric(20,8) NOT NULL DEFAULT 0 CHECK (margin_used >= 0),
    is_drill    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL CONSTRAINT fk_orders_user_id REFERENCES profiles (id),
    symbol             text NOT NULL CONSTRAINT fk_orders_symbol REFERENCES instruments (symbol),
    order_type         text NOT NULL CHECK (order_type IN ('market', 'limit', 'stop')),
    side               text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity           numeric(20,8) NOT NULL CHECK (quantity > 0),
    price              numeric(20,8) CHECK (price > 0),
    status             text NOT NULL
        CHECK (status IN ('pending', 'executing', 'executed', 'failed', 'cancelled', 'rolled_back')),
    transaction_id     uuid,
    idempotency_key    text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    commission         numeric(20,8) CHECK (commission >= 0),
    execution_price    numeric(20,8) CHECK (execution_price > 0),
    total_cost         numeric(20,8) CHECK (total_cost >= 0),
    failure_reason     text,
    executed_at        timestamptz,
    rolled_back_at     timestamptz,
    rolled_back_reason text CHECK (length(rolled_back_reason) BETWEEN 1 AND 1000),
    position_id        uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_orders_user_idempotency_key UNIQUE (user_id, idempotency_key),
    -- lets positions reference (order, user) so a position cannot belong to another user's order
    CONSTRAINT uq_orders_id_user UNIQUE (id, user_id),
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
);

CREATE TABLE positions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL CONSTRAINT fk_positions_user_id REFERENCES profiles (id),
    order_id        uuid NOT NULL,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        numeric(20,8) NOT NULL CHECK (quantity > 0),
    entry_price     numeric(20,8) NOT NULL CHECK (entry_price > 0),
    margin_used     numeric(20,8) NOT NULL CHECK (margin_used >= 0),
    commission_paid numeric(20,8) NOT NULL DEFAULT 0 CHECK (commission_paid >= 0),
    stop_loss       numeric(20,8) CHECK (stop_loss > 0),
    take_profit     numeric(20,8) CHECK (take_profit > 0),
    transaction_id  uuid,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'rolled_back')),
    opened_at       timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    -- one position per order: an order can never be half rolled back
    CONSTRAINT uq_positions_order_id UNIQUE (order_id),
    CONSTRAINT fk_positions_order_id FOREIGN KEY (order_id, user_id) REFERENCES orders (id, user_id),
    CONSTRAINT positions_closed_when_not_open CHECK ((status = 'open') = (closed_at IS NULL))
);

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
    orders_executed     integer NOT NULL DEFAULT 0 CHECK (orders_executed >= 0),
    orders_rolled_back  integer NOT NULL DEFAULT 0 CHECK (orders_rolled_back >= 0),
    commission_paid     numeric(20,8) NOT NULL DEFAULT 0 CHECK (commission_paid >= 0),
    commission_refunded numeric(20,8) NOT NULL DEFAULT 0 CHECK (commission_refunded >= 0),
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
