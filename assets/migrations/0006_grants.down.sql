SET LOCAL ROLE incident_owner;
REVOKE ALL ON instruments, profiles, orders, positions, daily_pnl_tracking, system_settings,
    maintenance_log, ledger_transfers, order_audit_log, ledger_audit_checkpoints FROM incident_viewer;
REVOKE EXECUTE ON FUNCTION
    rollback_precheck(uuid, uuid), rollback_postcheck(uuid, uuid, jsonb), check_active_transactions(uuid),
    ledger_audit(), ledger_audit_full(), ledger_audit_users(uuid[])
    FROM incident_viewer;
REVOKE EXECUTE ON FUNCTION
    create_trading_account(uuid, numeric),
    execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid),
    rollback_execute_order_atomic(uuid, uuid, text), rollback_order_execution(uuid, uuid, text),
    rollback_with_postcheck(uuid, uuid, text, jsonb, boolean), record_rollback_failure(uuid, uuid, text, jsonb),
    set_maintenance_mode(boolean, text), audit_horizon(), ledger_audit_checkpoint(bigint, bigint, bigint, boolean)
    FROM incident_operator;
RESET ROLE;
