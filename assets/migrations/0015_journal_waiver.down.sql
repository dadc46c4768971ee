-- Back to 0014: no journal waivers. Refused while the audit log holds any: they record
-- rollbacks done without the incident's journal, and the audit log is never rewritten.
SET LOCAL ROLE incident_owner;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM order_audit_log WHERE action = 'journal_waived') THEN
        RAISE EXCEPTION 'refusing to undo migration 15: order_audit_log holds journal waivers (rollbacks done without the incident''s journal)'
            USING HINT = 'the audit trail is never deleted or rewritten; keep migration 15';
    END IF;
END
$$;

DROP FUNCTION record_journal_waiver(uuid, uuid[], uuid[], text, text);
ALTER DOMAIN audit_action DROP CONSTRAINT audit_action_check;
ALTER DOMAIN audit_action ADD CONSTRAINT audit_action_check
    CHECK (VALUE IN ('order_rolled_back', 'rollback_failed', 'postcheck_failed'));

RESET ROLE;
