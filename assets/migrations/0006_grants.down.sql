SET LOCAL ROLE incident_owner;
REVOKE ALL ON instruments, profiles, orders, positions, daily_pnl_tracking, system_settings,
    maintenance_log, ledger_transfers, order_audit_log FROM incident_viewer;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM incident_viewer, incident_operator;
RESET ROLE;
