-- The double-entry ledger. Every change of profiles.balance / profiles.margin_used is a
-- transfer written here in the same transaction.
--
-- A transfer takes `amount` out of debit_account and puts it into credit_account. User
-- accounts (user_cash, user_margin) belong to user_id; house accounts are global:
-- house_clearing is money from outside (deposits), house_commission what the house earned.
-- Summed over every account the ledger is zero by construction; the caches in profiles
-- must equal the per-user sums (ledger_audit()).
SET LOCAL ROLE incident_owner;

CREATE TYPE ledger_account AS ENUM ('user_cash', 'user_margin', 'house_clearing', 'house_commission');
CREATE TYPE transfer_kind AS ENUM ('deposit', 'withdrawal', 'margin_lock', 'commission', 'reversal');

CREATE TABLE ledger_transfers (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES profiles (id),
    debit_account  ledger_account NOT NULL,
    credit_account ledger_account NOT NULL,
    amount         money_positive NOT NULL,
    kind           transfer_kind NOT NULL,
    order_id       uuid REFERENCES orders (id),
    reverses_id    bigint REFERENCES ledger_transfers (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_distinct_accounts CHECK (debit_account <> credit_account),
    CONSTRAINT ledger_reversal_names_original CHECK ((kind = 'reversal') = (reverses_id IS NOT NULL)),
    CONSTRAINT ledger_order_transfers_name_order CHECK (
        kind NOT IN ('margin_lock', 'commission', 'reversal') OR order_id IS NOT NULL),
    CONSTRAINT ledger_accounts_fit_kind CHECK (
           (kind = 'deposit'     AND debit_account = 'house_clearing' AND credit_account = 'user_cash')
        OR (kind = 'withdrawal'  AND debit_account = 'user_cash'      AND credit_account = 'house_clearing')
        OR (kind = 'margin_lock' AND debit_account = 'user_cash'      AND credit_account = 'user_margin')
        OR (kind = 'commission'  AND debit_account = 'user_cash'      AND credit_account = 'house_commission')
        OR  kind = 'reversal')
);

-- A transfer can be reversed at most once: a double refund is impossible even if every
-- other guard failed.
CREATE UNIQUE INDEX ledger_reversed_at_most_once ON ledger_transfers (reverses_id)
    WHERE reverses_id IS NOT NULL;
-- The execution transfers of an order (what a rollback reverses).
CREATE INDEX idx_ledger_order_originals ON ledger_transfers (order_id)
    WHERE reverses_id IS NULL AND order_id IS NOT NULL;
CREATE INDEX idx_ledger_user_id ON ledger_transfers (user_id);

-- The ledger is append-only.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'corrections are new rows (a reversal), never edits';
END
$$;

CREATE TRIGGER ledger_transfers_append_only
    BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transfers_no_truncate
    BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
-- Financial history is never deleted: orders and positions change state, they do not go.
CREATE TRIGGER orders_never_deleted
    BEFORE DELETE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER orders_no_truncate
    BEFORE TRUNCATE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER positions_never_deleted
    BEFORE DELETE ON positions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER positions_no_truncate
    BEFORE TRUNCATE ON positions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER maintenance_log_append_only
    BEFORE UPDATE OR DELETE ON maintenance_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER maintenance_log_no_truncate
    BEFORE TRUNCATE ON maintenance_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

RESET ROLE;
