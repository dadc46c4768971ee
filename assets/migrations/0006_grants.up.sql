-- Who may do what. Nothing is granted to PUBLIC; the functions run as incident_owner
-- (SECURITY DEFINER), so operators need no privilege on the tables to change them.
SET LOCAL ROLE incident_owner;

REVOKE ALL ON instruments, profiles, orders, positions, daily_pnl_tracking, system_settings,
    maintenance_log, ledger_transfers, order_audit_log FROM PUBLIC;
-- Every function of the schema is owned by incident_owner (migrations 3 to 5).
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;

GRANT SELECT ON instruments, profiles, orders, positions, daily_pnl_tracking, system_settings,
    maintenance_log, ledger_transfers, order_audit_log
    TO incident_viewer;

GRANT EXECUTE ON FUNCTION
    rollback_precheck(uuid, uuid),
    rollback_postcheck(uuid, uuid, jsonb),
    check_active_transactions(uuid),
    ledger_audit(),
    ledger_audit_users(uuid[])
    TO incident_viewer;

GRANT EXECUTE ON FUNCTION
    create_trading_account(uuid, numeric),
    execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid),
    rollback_execute_order_atomic(uuid, uuid, text),
    rollback_order_execution(uuid, uuid, text),
    rollback_with_postcheck(uuid, uuid, text, jsonb, boolean),
    record_rollback_failure(uuid, uuid, text, jsonb),
    set_maintenance_mode(boolean, text)
    TO incident_operator;

RESET ROLE;
