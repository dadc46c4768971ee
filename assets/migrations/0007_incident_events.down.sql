-- incident_events is the shared copy of every incident journal: the files may be gone
-- from the machines that wrote them, so the copy is never dropped while it holds entries.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM incident_events) THEN
        RAISE EXCEPTION 'refusing to drop incident_events: it holds the shared copy of incident journals'
            USING HINT = 'incident journals are never deleted; archive them with pg_dump first';
    END IF;
END
$$;

SET LOCAL ROLE incident_owner;
DROP FUNCTION incident_events_max_seq(text);
DROP FUNCTION record_incident_events(text, jsonb);
DROP TABLE incident_events;
RESET ROLE;
