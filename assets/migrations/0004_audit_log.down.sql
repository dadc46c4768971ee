DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM order_audit_log) THEN
        RAISE EXCEPTION 'refusing to drop order_audit_log: it holds audit rows'
            USING HINT = 'the audit trail is never deleted; archive it with pg_dump first';
    END IF;
END
$$;

SET LOCAL ROLE incident_owner;
DROP TABLE ledger_audit_checkpoint_users;
DROP TABLE ledger_audit_checkpoints;
DROP TABLE order_audit_log;
DROP FUNCTION order_audit_notify();
DROP DOMAIN audit_action;
RESET ROLE;
