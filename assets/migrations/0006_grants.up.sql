-- Who may do what. Nothing is granted to PUBLIC; the functions run as incident_owner
-- (SECURITY DEFINER), so operators need no privilege on the tables to change them.
SET LOCAL ROLE incident_owner;

REVOKE ALL ON instruments, profiles, orders, positions, daily_pnl_tracking, system_settings,
    maintenance_log, ledger_transfers, order_audit_log, ledger_audit_checkpoints,
    ledger_audit_checkpoint_users, book_changes FROM PUBLIC;
-- Named one by one: extensions may keep functions of other owners in public.
REVOKE EXECUTE ON FUNCTION
    ledger_refuse_change(), order_audit_notify(), positions_owner_matches_order(), orders_owner_never_changes(),
    _refusal(text, text, jsonb), _money(numeric), _operator(), _batch_id(), _reason_refusal(text),
    _execution_totals(uuid, uuid[]), _ledger_audit(uuid[], boolean),
    _audit_figures(uuid[], bigint, bigint), _audit_incremental(bigint, bigint, bigint, bigint),
    orders_record_change(), positions_record_change(), _order_figures(orders), _position_figures(positions),
    ledger_audit_full(), audit_horizon(),
    ledger_audit_checkpoint(bigint, bigint, bigint, boolean),
    _rollback_locked_orders(uuid, uuid[], text, text, uuid, timestamptz, jsonb),
    _order_result(orders, boolean),
    check_active_transactions(uuid), ledger_audit(), ledger_audit_users(uuid[]),
    create_trading_account(uuid, numeric),
    execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid),
    rollback_execute_order_atomic(uuid, uuid, text), rollback_order_execution(uuid, uuid, text),
    rollback_precheck(uuid, uuid), rollback_postcheck(uuid, uuid, jsonb),
    set_maintenance_mode(boolean, text), rollback_with_postcheck(uuid, uuid, text, jsonb, boolean),
    record_rollback_failure(uuid, uuid, text, jsonb)
    FROM PUBLIC;

GRANT SELECT ON instruments, profiles, orders, positions, daily_pnl_tracking, system_settings,
    maintenance_log, ledger_transfers, order_audit_log, ledger_audit_checkpoints
    TO incident_viewer;

GRANT EXECUTE ON FUNCTION
    rollback_precheck(uuid, uuid),
    rollback_postcheck(uuid, uuid, jsonb),
    check_active_transactions(uuid),
    ledger_audit(),
    ledger_audit_full(),
    ledger_audit_users(uuid[])
    TO incident_viewer;

GRANT EXECUTE ON FUNCTION
    create_trading_account(uuid, numeric),
    execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid),
    rollback_execute_order_atomic(uuid, uuid, text),
    rollback_order_execution(uuid, uuid, text),
    rollback_with_postcheck(uuid, uuid, text, jsonb, boolean),
    record_rollback_failure(uuid, uuid, text, jsonb),
    set_maintenance_mode(boolean, text),
    audit_horizon(),
    ledger_audit_checkpoint(bigint, bigint, bigint, boolean)
    TO incident_operator;

RESET ROLE;
