DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_transfers) THEN
        RAISE EXCEPTION 'refusing to drop the ledger: it holds transfers'
            USING HINT = 'financial history is never deleted; archive it with pg_dump first';
    END IF;
END
$$;

SET LOCAL ROLE incident_owner;
DROP TRIGGER positions_no_truncate ON positions;
DROP TRIGGER positions_never_deleted ON positions;
DROP TRIGGER orders_no_truncate ON orders;
DROP TRIGGER orders_never_deleted ON orders;
DROP TRIGGER maintenance_log_no_truncate ON maintenance_log;
DROP TRIGGER maintenance_log_append_only ON maintenance_log;
DROP TABLE ledger_transfers;
DROP FUNCTION ledger_refuse_change();
DROP TYPE transfer_kind;
DROP TYPE ledger_account;
RESET ROLE;
