-- A copy of each incident's journal, for people and tools that read the database. The
-- journal file stays the source of truth (it keeps working when the database does not);
-- entries are copied here when the database is reachable. Insert-only.
SET LOCAL ROLE incident_owner;

CREATE TABLE incident_events (
    incident_id text NOT NULL CHECK (incident_id ~ '^[A-Za-z0-9-]{1,64}$'),
    seq         bigint NOT NULL CHECK (seq >= 1),
    at          timestamptz NOT NULL,
    operator    text NOT NULL,
    kind        text NOT NULL CHECK (kind ~ '^[a-z0-9_]{1,64}$'),
    data        jsonb NOT NULL,
    prev        text NOT NULL CHECK (prev ~ '^[0-9a-f]{64}$'),
    hash        text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    copied_by   text NOT NULL DEFAULT session_user,
    copied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, seq)
);

CREATE TRIGGER incident_events_append_only
    BEFORE UPDATE OR DELETE ON incident_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER incident_events_no_truncate
    BEFORE TRUNCATE ON incident_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Copies journal entries. An entry already there with the same hash is skipped; one with
-- a different hash means two journals of one incident disagree, and is reported.
CREATE FUNCTION record_incident_events(p_incident_id text, p_entries jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_inserted integer;
    v_conflicts jsonb;
BEGIN
    IF p_incident_id IS NULL OR p_entries IS NULL OR jsonb_typeof(p_entries) <> 'array' THEN
        RETURN _refusal('invalid_argument', 'an incident id and an array of entries are required');
    END IF;
    WITH input AS (
        SELECT (e ->> 'seq')::bigint AS seq, (e ->> 'at')::timestamptz AS at, e ->> 'operator' AS operator,
               e ->> 'kind' AS kind, e -> 'data' AS data, e ->> 'prev' AS prev, e ->> 'hash' AS hash
        FROM jsonb_array_elements(p_entries) AS e
    ), ins AS (
        INSERT INTO incident_events (incident_id, seq, at, operator, kind, data, prev, hash)
        SELECT p_incident_id, seq, at, operator, kind, data, prev, hash FROM input
        ON CONFLICT (incident_id, seq) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM ins),
           (SELECT jsonb_agg(i.seq) FROM input i JOIN incident_events x
              ON x.incident_id = p_incident_id AND x.seq = i.seq AND x.hash <> i.hash)
    INTO v_inserted, v_conflicts;
    RETURN jsonb_build_object('success', v_conflicts IS NULL, 'inserted', v_inserted,
                              'conflicts', coalesce(v_conflicts, '[]'::jsonb));
END
$$;

CREATE FUNCTION incident_events_max_seq(p_incident_id text)
RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(max(seq), 0) FROM incident_events WHERE incident_id = p_incident_id
$$;

REVOKE ALL ON incident_events FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION record_incident_events(text, jsonb), incident_events_max_seq(text) FROM PUBLIC;
GRANT SELECT ON incident_events TO incident_viewer;
GRANT EXECUTE ON FUNCTION incident_events_max_seq(text) TO incident_viewer;
GRANT EXECUTE ON FUNCTION record_incident_events(text, jsonb) TO incident_operator;

RESET ROLE;
