-- Roles are shared by every database of the cluster, so they are only dropped when no
-- other database still uses them; otherwise they are left in place on purpose.
REVOKE USAGE ON SCHEMA public FROM incident_viewer, incident_operator;
REVOKE USAGE, CREATE ON SCHEMA public FROM incident_owner;

DO $$
BEGIN
    BEGIN
        DROP ROLE IF EXISTS incident_operator;
        DROP ROLE IF EXISTS incident_viewer;
        DROP ROLE IF EXISTS incident_owner;
    EXCEPTION WHEN dependent_objects_still_exist THEN
        RAISE NOTICE 'incident roles are still used by another database; kept';
    END;
END
$$;
