-- Roles of the SQL contract.
--   incident_owner    owns every object; cannot log in, so nobody acts as it directly.
--   incident_viewer   may read the book and run the read-only checks.
--   incident_operator may also execute orders, roll them back and toggle maintenance mode.
-- Roles are cluster-wide: other databases on the same server may already have created them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'incident_owner') THEN
        CREATE ROLE incident_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'incident_viewer') THEN
        CREATE ROLE incident_viewer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'incident_operator') THEN
        CREATE ROLE incident_operator NOLOGIN;
    END IF;
    -- The migrating role creates the objects as incident_owner (SET ROLE in later migrations).
    IF NOT pg_has_role(current_user, 'incident_owner', 'MEMBER') THEN
        EXECUTE format('GRANT incident_owner TO %I', current_user);
    END IF;
END
$$;

GRANT incident_viewer TO incident_operator;

-- Nobody but the owner creates objects in public: a function or operator planted there
-- would be found by the SECURITY DEFINER functions' search_path.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO incident_owner;
GRANT USAGE ON SCHEMA public TO incident_viewer, incident_operator;
