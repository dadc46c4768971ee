-- Back to 0017: no circuit breaker. Refused while it is open (undoing it would let the
-- rollbacks it stops through, unannounced) and once it was ever switched (the log is never
-- dropped).
SET LOCAL ROLE incident_owner;

LOCK TABLE circuit_breaker, breaker_log IN EXCLUSIVE MODE;

DO $$
BEGIN
    IF (SELECT open FROM circuit_breaker) THEN
        RAISE EXCEPTION 'refusing to undo migration 18: the circuit breaker is open'
            USING HINT = 'close it first (breaker close --reason ...)';
    END IF;
    IF EXISTS (SELECT 1 FROM breaker_log) THEN
        RAISE EXCEPTION 'refusing to undo migration 18: breaker_log records switches'
            USING HINT = 'the breaker log is never dropped; keep migration 18';
    END IF;
END
$$;

DROP TRIGGER order_audit_log_opens_breaker ON order_audit_log;
DROP FUNCTION _rollback_locked_orders(uuid, uuid[], text, text, uuid, timestamptz, jsonb);
ALTER FUNCTION _rollback_locked_orders_unguarded(uuid, uuid[], text, text, uuid, timestamptz, jsonb)
    RENAME TO _rollback_locked_orders;
DROP FUNCTION _breaker_on_failed_postcheck(), close_breaker(text), open_breaker(text, text),
    _switch_breaker(boolean, text, text);
DROP TABLE breaker_log, circuit_breaker;

RESET ROLE;
