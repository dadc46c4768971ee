DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM order_audit_log) THEN
        RAISE EXCEPTION 'refusing to drop order_audit_log: it holds audit rows'
            USING HINT = 'the audit trail is never deleted; archive it with pg_dump first';
    END IF;
END
$$;

-- book_changes is the append-only history the incremental audit reads; the checkpoints
-- are what earlier audits proved.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM book_changes) THEN
        RAISE EXCEPTION 'refusing to drop book_changes: it holds the history of the book'
            USING HINT = 'the audit trail is never deleted; archive it with pg_dump first';
    END IF;
    IF EXISTS (SELECT 1 FROM ledger_audit_checkpoints) THEN
        RAISE EXCEPTION 'refusing to drop ledger_audit_checkpoints: it holds audit checkpoints'
            USING HINT = 'the audit trail is never deleted; archive it with pg_dump first';
    END IF;
END
$$;

SET LOCAL ROLE incident_owner;
DROP TABLE ledger_audit_checkpoint_users;
DROP TABLE ledger_audit_checkpoints;
DROP TRIGGER positions_record_change ON positions;
DROP TRIGGER orders_record_change ON orders;
DROP FUNCTION positions_record_change();
DROP FUNCTION orders_record_change();
DROP FUNCTION _position_figures(positions);
DROP FUNCTION _order_figures(orders);
DROP TABLE book_changes;
DROP TABLE order_audit_log;
DROP FUNCTION order_audit_notify();
DROP DOMAIN audit_action;
RESET ROLE;
