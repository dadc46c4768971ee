-- Releases of the execution system (issue 11: "Level 3 full-system rollback").
--
-- A release is a named change to the objects the execution path runs on (functions,
-- indexes, constraints, columns, tables, triggers, views of schema public), with a deploy,
-- a revert and a verify script, as Sqitch has them. release_deploy runs the deploy and
-- records every object it changed with its definition before and after and their
-- checksums; release_rollback takes the book back to an earlier release in one transaction:
-- it archives every value it would drop (count and checksum checked in the same
-- transaction), runs the revert scripts newest first, puts every function back to its exact
-- recorded definition, refuses a revert that deletes, rewrites or drops anything it did not
-- archive, and proves that every object's checksum is the target release's. It requires
-- maintenance mode on and proved by a probe, and waits (lock_timeout) for the executions in
-- flight, never cutting one. release_restore puts archived values back once the release is
-- deployed again.
--
-- Deploying runs arbitrary SQL as the owner, so only the owner (the login that migrates)
-- may deploy or restore; the operator may pre-check, rehearse, roll back, verify and probe.
-- Every table here is append-only: history of releases is never rewritten.
--
-- The functions that run scripts, read definitions or turn values into text pin the session
-- settings that change how SQL parses or how a value prints (DateStyle, IntervalStyle,
-- TimeZone, extra_float_digits, bytea_output, standard_conforming_strings, array_nulls,
-- transform_null_equals, quote_all_identifiers): the caller's session must not change what
-- a script does, make a definition's checksum differ (false drift), or archive a value as
-- text that does not read back the same (a float with two digits checks fine against
-- itself and is restored wrong).

-- The archive is a schema of its own, so a release can never touch it by accident.
CREATE SCHEMA release_archive AUTHORIZATION incident_owner;

SET LOCAL ROLE incident_owner;

CREATE TABLE releases (
    id                   bigserial PRIMARY KEY,
    name                 text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    description          text NOT NULL DEFAULT '',
    service_version      text CHECK (service_version ~ '^[A-Za-z0-9][A-Za-z0-9._+-]{0,62}$'),
    deploy_sql           text NOT NULL,
    revert_sql           text NOT NULL,
    verify_sql           text NOT NULL,
    deployed_at          timestamptz NOT NULL,
    recorded_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    deployed_by_login    text NOT NULL DEFAULT session_user,
    deployed_by          text NOT NULL
);

-- What a release changed: one row per object, its definition before and after (NULL: the
-- object did not exist), the statement that recreates it, and their md5 checksums.
CREATE TABLE release_objects (
    release_id  bigint NOT NULL REFERENCES releases,
    kind        text NOT NULL CHECK (kind IN ('function', 'index', 'constraint', 'column', 'table', 'trigger', 'view')),
    identity    text NOT NULL,
    rel         text,
    attr        text,
    before_def  text,
    before_ddl  text,
    before_sum  text,
    after_def   text,
    after_ddl   text,
    after_sum   text,
    PRIMARY KEY (release_id, kind, identity),
    CHECK (before_def IS NOT NULL OR after_def IS NOT NULL)
);

-- A release taken back: when, by whom, why, and what the rollback proved.
CREATE TABLE release_reverts (
    release_id        bigint PRIMARY KEY REFERENCES releases,
    target_id         bigint NOT NULL REFERENCES releases,
    reverted_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    reverted_by_login text NOT NULL DEFAULT session_user,
    reverted_by       text NOT NULL,
    reason            text NOT NULL,
    operation_id      uuid,
    accepted_drift    jsonb NOT NULL DEFAULT '[]'
);

-- What a revert dropped: one set per column or table, with the count and checksum it had
-- in the live table, which the archived copy was checked against.
CREATE TABLE release_archive.archive_sets (
    id            bigserial PRIMARY KEY,
    release_id    bigint NOT NULL REFERENCES public.releases,
    kind          text NOT NULL CHECK (kind IN ('column', 'table')),
    rel           text NOT NULL,
    attr          text,
    definition    text NOT NULL,
    key_columns   text[],
    archived_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    archived_by_login text NOT NULL DEFAULT session_user,
    archived_by   text NOT NULL,
    row_count     bigint NOT NULL,
    checksum      numeric NOT NULL
);

-- One archived value: the row's key (its primary key, or the rest of the row) and the value
-- as text (a dropped table's rows as JSON).
CREATE TABLE release_archive.archived_values (
    set_id  bigint NOT NULL REFERENCES release_archive.archive_sets,
    row_key jsonb NOT NULL,
    value   text NOT NULL
);
CREATE INDEX archived_values_set ON release_archive.archived_values (set_id);

CREATE TABLE release_archive.restores (
    set_id            bigint NOT NULL REFERENCES release_archive.archive_sets,
    release_id        bigint NOT NULL REFERENCES public.releases,
    restored_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    restored_by_login text NOT NULL DEFAULT session_user,
    restored_by       text NOT NULL,
    row_count         bigint NOT NULL,
    checksum          numeric NOT NULL,
    PRIMARY KEY (set_id, release_id)
);

CREATE TRIGGER releases_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON releases
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER release_objects_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON release_objects
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER release_reverts_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON release_reverts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER archive_sets_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON release_archive.archive_sets
    FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_refuse_change();
CREATE TRIGGER archived_values_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON release_archive.archived_values
    FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_refuse_change();
CREATE TRIGGER restores_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON release_archive.restores
    FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_refuse_change();

-- The releases in effect: deployed and not reverted, oldest first.
CREATE VIEW active_releases AS
    SELECT r.* FROM releases r
    WHERE NOT EXISTS (SELECT 1 FROM release_reverts v WHERE v.release_id = r.id);

-- Every object of schema public a release can change, with its definition, the statement
-- that recreates it and the definition's md5. A function's definition includes its owner
-- and privileges, so a revert that leaves them different does not pass.
CREATE FUNCTION _release_catalog()
RETURNS TABLE (kind text, identity text, rel text, attr text, definition text, ddl text, checksum text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET bytea_output = 'hex' SET standard_conforming_strings = on SET array_nulls = on SET transform_null_equals = off
SET quote_all_identifiers = off AS $$
    WITH o AS (
        SELECT 'function' AS kind, p.oid::regprocedure::text AS identity, NULL::text AS rel, NULL::text AS attr,
               pg_get_functiondef(p.oid) || E'\n-- owner ' || pg_get_userbyid(p.proowner)
                   || ' privileges ' || coalesce(p.proacl::text, 'default') AS definition,
               pg_get_functiondef(p.oid) AS ddl
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.prokind IN ('f', 'p')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        UNION ALL
        SELECT 'index', c.relname, t.relname, NULL, pg_get_indexdef(c.oid), pg_get_indexdef(c.oid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
        WHERE c.relnamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'constraint', t.relname || '.' || k.conname, t.relname, k.conname, pg_get_constraintdef(k.oid),
               format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, k.conname, pg_get_constraintdef(k.oid))
        FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
        WHERE t.relnamespace = 'public'::regnamespace
        UNION ALL
        SELECT 'column', t.relname || '.' || a.attname, t.relname, a.attname,
               format_type(a.atttypid, a.atttypmod)
                   || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                   || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
                   || coalesce(' COLLATE ' || nullif(a.attcollation, t2.typcollation)::regcollation::text, ''),
               NULL
        FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid JOIN pg_type t2 ON t2.oid = a.atttypid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE t.relnamespace = 'public'::regnamespace AND t.relkind IN ('r', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT 'table', t.relname, t.relname, NULL,
               'table ' || t.relkind::text || coalesce(' with ' || t.reloptions::text, '') || ' owner ' || pg_get_userbyid(t.relowner),
               NULL
        FROM pg_class t WHERE t.relnamespace = 'public'::regnamespace AND t.relkind IN ('r', 'p')
        UNION ALL
        SELECT 'trigger', t.relname || '.' || g.tgname, t.relname, g.tgname, pg_get_triggerdef(g.oid),
               pg_get_triggerdef(g.oid)
        FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid
        WHERE t.relnamespace = 'public'::regnamespace AND NOT g.tgisinternal
        UNION ALL
        SELECT 'view', v.relname, v.relname, NULL, pg_get_viewdef(v.oid),
               format('CREATE OR REPLACE VIEW %I AS %s', v.relname, pg_get_viewdef(v.oid))
        FROM pg_class v WHERE v.relnamespace = 'public'::regnamespace AND v.relkind = 'v'
    )
    SELECT o.kind, o.identity, o.rel, o.attr, o.definition, o.ddl, md5(o.definition) FROM o
$$;

-- The catalog as one JSON object keyed by "kind identity".
CREATE FUNCTION _release_snapshot()
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(jsonb_object_agg(c.kind || ' ' || c.identity,
               jsonb_build_object('kind', c.kind, 'identity', c.identity, 'rel', c.rel, 'attr', c.attr,
                                  'def', c.definition, 'ddl', c.ddl, 'sum', c.checksum)), '{}')
    FROM _release_catalog() c
$$;

-- An order-independent checksum of a set of strings: the sum of each one's first 64 bits
-- of md5, as numeric (it cannot overflow). Streams: no string of the whole set is built.
CREATE FUNCTION _release_hash(p text)
RETURNS numeric LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT ('x' || substr(md5(p), 1, 16))::bit(64)::bigint::numeric
$$;

-- Runs a release's script as its author wrote it: objects it creates unqualified go to
-- public (the definer functions here search pg_catalog first, where nobody may create).
-- Only the owner can create in public, so public first plants nothing.
CREATE FUNCTION _release_exec(p_sql text)
RETURNS void LANGUAGE plpgsql SET search_path = public, pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE p_sql;
END
$$;

-- Raises a refusal that the outermost function turns into {success: false, error_code, …}.
CREATE FUNCTION _release_refuse(p_code text, p_message text, p_extra jsonb DEFAULT '{}')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'IC100', MESSAGE = p_code, DETAIL = p_message, HINT = p_extra::text;
END
$$;

-- Whether an object belongs to this machinery (a release must not change it).
CREATE FUNCTION _release_machinery(p_kind text, p_identity text, p_rel text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT p_identity ~ '^_?release' OR coalesce(p_rel ~ '^_?release', false)
        OR p_identity ~ '^active_releases'
$$;

-- The row key of a table, as an expression over alias t: its primary key's columns as a
-- JSON object, else the whole row without the columns p_without. For a column's archive
-- p_without is every column its release added to the table (_release_added_columns): each
-- of them is NULL once the release is deployed again, so a key that held one of their
-- values would match no row on restore. (A table without a primary key has no index row:
-- the FILTERs keep its NULLs out of format(), which cannot quote a NULL identifier.)
CREATE FUNCTION _release_key(p_rel text, p_without text[])
RETURNS TABLE (expr text, columns text[]) LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(
               'jsonb_build_object(' || string_agg(format('%L, t.%I', a.attname, a.attname), ', '
                                                   ORDER BY array_position(i.indkey::int2[], a.attnum))
                                        FILTER (WHERE a.attname IS NOT NULL) || ')',
               format('(to_jsonb(t) - %L::text[])', coalesce(p_without, '{}'))),
           array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum)) FILTER (WHERE a.attname IS NOT NULL)
    FROM pg_class c
    LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey::int2[])
                             AND a.attname <> ALL (coalesce(p_without, '{}'))
    WHERE c.relnamespace = 'public'::regnamespace AND c.relname = p_rel
$$;

-- The columns release p_release added to table p_rel (and that its revert drops).
CREATE FUNCTION _release_added_columns(p_release bigint, p_rel text)
RETURNS text[] LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(array_agg(o.attr ORDER BY o.attr), '{}') FROM release_objects o
    WHERE o.release_id = p_release AND o.kind = 'column' AND o.rel = p_rel AND o.before_def IS NULL
$$;

-- Copies the values a revert drops (a column's non-null values, or a table's rows) into the
-- archive, and checks the copy against the live table by count and checksum.
CREATE FUNCTION _release_archive(p_release bigint, p_kind text, p_rel text, p_attr text, p_def text)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_key      text;
    v_columns  text[];
    v_value    text;
    v_where    text;
    v_set      bigint;
    v_live_n   bigint;
    v_live_sum numeric;
    v_arch_n   bigint;
    v_arch_sum numeric;
BEGIN
    -- Writers of the table are waited for (lock_timeout) and kept out until the revert
    -- commits: under READ COMMITTED the next statement's snapshot holds all they wrote, and
    -- nothing is written between this copy and the DROP that would not be in it.
    EXECUTE format('LOCK TABLE public.%I IN SHARE MODE', p_rel);
    SELECT k.expr, k.columns INTO v_key, v_columns
    FROM _release_key(p_rel, CASE WHEN p_kind = 'column' THEN _release_added_columns(p_release, p_rel) END) k;
    IF p_kind = 'column' THEN
        v_value := format('t.%I::text', p_attr);
        v_where := format('t.%I IS NOT NULL', p_attr);
    ELSE
        v_value := 'to_jsonb(t)::text';
        v_where := 'true';
    END IF;
    EXECUTE format('SELECT count(*), coalesce(sum(_release_hash(%s::text || ''='' || %s)), 0) FROM public.%I t WHERE %s',
                   v_key, v_value, p_rel, v_where)
        INTO v_live_n, v_live_sum;
    INSERT INTO release_archive.archive_sets (release_id, kind, rel, attr, definition, key_columns, archived_by,
                                              row_count, checksum)
    VALUES (p_release, p_kind, p_rel, p_attr, p_def, v_columns, _operator(), v_live_n, v_live_sum)
    RETURNING id INTO v_set;
    EXECUTE format('INSERT INTO release_archive.archived_values (set_id, row_key, value) SELECT $1, %s, %s FROM public.%I t WHERE %s',
                   v_key, v_value, p_rel, v_where)
        USING v_set;
    SELECT count(*), coalesce(sum(_release_hash(row_key::text || '=' || value)), 0) INTO v_arch_n, v_arch_sum
    FROM release_archive.archived_values WHERE set_id = v_set;
    IF v_arch_n <> v_live_n OR v_arch_sum <> v_live_sum THEN
        PERFORM _release_refuse('archive_mismatch',
            format('the archive of %s holds %s values, checksum %s; the table held %s, checksum %s',
                   coalesce(p_rel || '.' || p_attr, p_rel), v_arch_n, v_arch_sum, v_live_n, v_live_sum));
    END IF;
    RETURN jsonb_build_object('set_id', v_set, 'kind', p_kind, 'object', coalesce(p_rel || '.' || p_attr, p_rel),
                              'rows', v_live_n, 'checksum', v_live_sum::text, 'archived_checksum', v_arch_sum::text);
END
$$;

-- Records a release: runs its deploy script, then its verify script, and keeps what changed.
-- p_deployed_at registers history after the fact (never in the future); NULL is now.
CREATE FUNCTION release_deploy(p_name text, p_description text, p_service_version text,
                               p_deploy text, p_revert text, p_verify text,
                               p_deployed_at timestamptz DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET bytea_output = 'hex' SET standard_conforming_strings = on SET array_nulls = on SET transform_null_equals = off
SET quote_all_identifiers = off AS $$
DECLARE
    v_before  jsonb;
    v_after   jsonb;
    v_id      bigint;
    v_changed jsonb;
    v_bad     text;
    v_code    text;
    v_msg     text;
    v_extra   text;
BEGIN
    IF p_name IS NULL OR p_name !~ '^[a-z0-9][a-z0-9._-]{0,62}$' THEN
        RETURN _refusal('invalid_argument', 'a release name is 1 to 63 lowercase letters, digits, dots, dashes or underscores');
    END IF;
    IF p_deploy IS NULL OR p_revert IS NULL OR p_verify IS NULL THEN
        RETURN _refusal('invalid_argument', 'a release needs its deploy, revert and verify scripts');
    END IF;
    IF p_deployed_at > clock_timestamp() + interval '2 minutes' THEN
        RETURN _refusal('invalid_argument', 'a release cannot have been deployed in the future');
    END IF;
    IF EXISTS (SELECT 1 FROM active_releases WHERE name = p_name) THEN
        RETURN _refusal('already_deployed', format('release %s is deployed; roll it back before deploying it again', p_name));
    END IF;
    PERFORM set_config('lock_timeout', '10s', true);
    BEGIN
        v_before := _release_snapshot();
        PERFORM _release_exec(p_deploy);
        v_after := _release_snapshot();
        SELECT coalesce(jsonb_agg(jsonb_build_object('key', k, 'before', v_before -> k, 'after', v_after -> k)), '[]')
        INTO v_changed
        FROM (SELECT jsonb_object_keys(v_before) UNION SELECT jsonb_object_keys(v_after)) AS keys (k)
        WHERE (v_before -> k -> 'sum') IS DISTINCT FROM (v_after -> k -> 'sum');
        SELECT string_agg(x ->> 'key', ', ') INTO v_bad FROM jsonb_array_elements(v_changed) x
        WHERE _release_machinery(coalesce(x -> 'after' ->> 'kind', x -> 'before' ->> 'kind'),
                                 coalesce(x -> 'after' ->> 'identity', x -> 'before' ->> 'identity'),
                                 coalesce(x -> 'after' ->> 'rel', x -> 'before' ->> 'rel'));
        IF v_bad IS NOT NULL THEN
            PERFORM _release_refuse('invalid_release', 'a release may not change the release machinery: ' || v_bad);
        END IF;
        PERFORM _release_exec(p_verify);
        INSERT INTO releases (name, description, service_version, deploy_sql, revert_sql, verify_sql, deployed_at, deployed_by)
        VALUES (p_name, _printable(coalesce(p_description, '')), p_service_version, p_deploy, p_revert, p_verify,
                coalesce(p_deployed_at, clock_timestamp()), _operator())
        RETURNING id INTO v_id;
        INSERT INTO release_objects (release_id, kind, identity, rel, attr, before_def, before_ddl, before_sum,
                                     after_def, after_ddl, after_sum)
        SELECT v_id, coalesce(x -> 'after' ->> 'kind', x -> 'before' ->> 'kind'),
               coalesce(x -> 'after' ->> 'identity', x -> 'before' ->> 'identity'),
               coalesce(x -> 'after' ->> 'rel', x -> 'before' ->> 'rel'),
               coalesce(x -> 'after' ->> 'attr', x -> 'before' ->> 'attr'),
               x -> 'before' ->> 'def', x -> 'before' ->> 'ddl', x -> 'before' ->> 'sum',
               x -> 'after' ->> 'def', x -> 'after' ->> 'ddl', x -> 'after' ->> 'sum'
        FROM jsonb_array_elements(v_changed) x;
    EXCEPTION
        WHEN SQLSTATE 'IC100' THEN
            GET STACKED DIAGNOSTICS v_code = MESSAGE_TEXT, v_msg = PG_EXCEPTION_DETAIL, v_extra = PG_EXCEPTION_HINT;
            RETURN _refusal(v_code, v_msg, coalesce(nullif(v_extra, '')::jsonb, '{}'));
        WHEN lock_not_available THEN
            RETURN _refusal('lock_timeout', 'the deploy waited 10 s for a lock and gave up; nothing changed');
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
            RETURN _refusal('deploy_failed', 'the deploy or verify script failed, nothing changed: ' || _printable(v_msg));
    END;
    RETURN jsonb_build_object('success', true, 'release', p_name, 'id', v_id,
                              'objects', (SELECT count(*) FROM release_objects WHERE release_id = v_id),
                              'deployed_at', (SELECT deployed_at FROM releases WHERE id = v_id));
END
$$;

-- The state each object should have once the releases after p_target are reverted: its
-- definition before the oldest of them that changed it; with the newest one's definition
-- after (what it should be now).
CREATE FUNCTION _release_expectations(p_target bigint)
RETURNS TABLE (kind text, identity text, rel text, attr text, expected_def text, expected_ddl text, expected_sum text,
               deployed_sum text, added_by bigint, added_def text)
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT o.kind, o.identity,
           (array_agg(o.rel ORDER BY o.release_id))[1], (array_agg(o.attr ORDER BY o.release_id))[1],
           (array_agg(o.before_def ORDER BY o.release_id))[1], (array_agg(o.before_ddl ORDER BY o.release_id))[1],
           (array_agg(o.before_sum ORDER BY o.release_id))[1],
           (array_agg(o.after_sum ORDER BY o.release_id DESC))[1],
           min(o.release_id) FILTER (WHERE o.before_def IS NULL),
           (array_agg(o.after_def ORDER BY o.release_id) FILTER (WHERE o.before_def IS NULL))[1]
    FROM release_objects o JOIN active_releases r ON r.id = o.release_id
    WHERE o.release_id > p_target
    GROUP BY o.kind, o.identity
$$;

-- The objects changed by hand since the release that changed them last was deployed, among
-- those a rollback to p_target would change.
CREATE FUNCTION _release_drift_since(p_target bigint)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('kind', e.kind, 'identity', e.identity,
                                                 'recorded_sum', e.deployed_sum, 'current_sum', c.checksum)
                              ORDER BY e.kind, e.identity), '[]')
    FROM _release_expectations(p_target) e
    LEFT JOIN _release_catalog() c ON c.kind = e.kind AND c.identity = e.identity
    WHERE c.checksum IS DISTINCT FROM e.deployed_sum
$$;

-- The target release (active, by name) or a refusal.
CREATE FUNCTION _release_target(p_to text)
RETURNS bigint LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT id INTO v_id FROM active_releases WHERE name = p_to;
    IF NOT FOUND THEN
        PERFORM _release_refuse('unknown_release', format('no deployed release is named %s', _printable(coalesce(p_to, ''))));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM active_releases WHERE id > v_id) THEN
        PERFORM _release_refuse('nothing_to_revert', format('%s is the current release', p_to));
    END IF;
    RETURN v_id;
END
$$;

-- What a rollback to p_to would do, read only: the releases it reverts, every object it
-- changes (and how), the objects changed by hand since their release (drift), every value it
-- would archive and drop (with counts), and whether maintenance mode allows it now.
CREATE FUNCTION release_revert_precheck(p_to text)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET bytea_output = 'hex' SET standard_conforming_strings = on SET array_nulls = on SET transform_null_equals = off
SET quote_all_identifiers = off AS $$
DECLARE
    v_target   bigint;
    v_objects  jsonb := '[]';
    v_drift    jsonb := '[]';
    v_archive  jsonb := '[]';
    v_n        bigint;
    e          record;
    v_now      record;
    v_code     text;
    v_msg      text;
    v_extra    text;
BEGIN
    BEGIN
        v_target := _release_target(p_to);
    EXCEPTION WHEN SQLSTATE 'IC100' THEN
        GET STACKED DIAGNOSTICS v_code = MESSAGE_TEXT, v_msg = PG_EXCEPTION_DETAIL, v_extra = PG_EXCEPTION_HINT;
        RETURN _refusal(v_code, v_msg);
    END;
    FOR e IN SELECT * FROM _release_expectations(v_target) ORDER BY kind, identity LOOP
        SELECT c.checksum AS sum INTO v_now FROM _release_catalog() c WHERE c.kind = e.kind AND c.identity = e.identity;
        v_objects := v_objects || jsonb_build_object('kind', e.kind, 'identity', e.identity,
            'action', CASE WHEN e.expected_def IS NULL THEN 'drop'
                           WHEN e.deployed_sum IS NULL THEN 'recreate'
                           ELSE 'restore' END,
            'current_sum', v_now.sum, 'target_sum', e.expected_sum);
        IF e.expected_def IS NULL AND e.kind IN ('column', 'table') AND v_now.sum IS NOT NULL
           AND NOT (e.kind = 'column' AND EXISTS (SELECT 1 FROM _release_expectations(v_target) x
                                                  WHERE x.kind = 'table' AND x.identity = e.rel AND x.expected_def IS NULL)) THEN
            IF e.kind = 'column' THEN
                EXECUTE format('SELECT count(%I) FROM public.%I', e.attr, e.rel) INTO v_n;
            ELSE
                EXECUTE format('SELECT count(*) FROM public.%I', e.rel) INTO v_n;
            END IF;
            v_archive := v_archive || jsonb_build_object('kind', e.kind, 'object', e.identity, 'values', v_n);
        END IF;
    END LOOP;
    v_drift := _release_drift_since(v_target);
    RETURN jsonb_build_object(
        'success', true,
        'target', p_to,
        'releases', (SELECT jsonb_agg(jsonb_build_object('id', id, 'name', name, 'service_version', service_version,
                                                         'deployed_at', deployed_at) ORDER BY id DESC)
                     FROM active_releases WHERE id > v_target),
        'target_service_version', (SELECT service_version FROM releases WHERE id = v_target),
        'objects', v_objects, 'drift', v_drift, 'archive', v_archive,
        'maintenance_mode', (SELECT maintenance_mode FROM system_settings));
END
$$;

-- Takes the execution system back to release p_to in one transaction (see the top of this
-- file). p_dry_run does all of it and rolls it back, answering what it did. Refusals:
-- invalid_argument, invalid_reason, invalid_isolation, unknown_release, nothing_to_revert, maintenance_off,
-- maintenance_not_verified, executions_in_flight, drift, archive_mismatch, data_loss,
-- revert_incomplete, verify_failed, revert_failed.
CREATE FUNCTION release_rollback(p_to text, p_reason text, p_accept_drift boolean DEFAULT false,
                                 p_dry_run boolean DEFAULT false, p_operation uuid DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET bytea_output = 'hex' SET standard_conforming_strings = on SET array_nulls = on SET transform_null_equals = off
SET quote_all_identifiers = off AS $$
DECLARE
    v_target    bigint;
    v_probe     jsonb;
    v_drift     jsonb := '[]';
    v_archived  jsonb := '[]';
    v_checks    jsonb := '[]';
    v_reverted  jsonb := '[]';
    v_result    jsonb;
    v_lock      text := current_setting('lock_timeout');
    v_before    jsonb;
    v_after     jsonb;
    v_kept      jsonb;
    v_bad       text;
    v_n         bigint;
    v_operator  text := _operator();
    r           record;
    e           record;
    c           record;
    v_code      text;
    v_msg       text;
    v_extra     text;
BEGIN
    IF p_accept_drift IS NULL OR p_dry_run IS NULL THEN
        RETURN _refusal('invalid_argument', 'say whether drift is accepted and whether this is a dry run');
    END IF;
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;
    p_reason := _printable(p_reason);
    -- Only READ COMMITTED: each statement below must see what committed before it. An older
    -- snapshot (REPEATABLE READ, SERIALIZABLE) would archive the values of a column as they
    -- were when the caller's transaction began, then drop the ones written since.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN _refusal('invalid_isolation',
            'a release rollback runs in a READ COMMITTED transaction (this one is '
            || current_setting('transaction_isolation') || '): its archive must see every value committed before it');
    END IF;
    BEGIN
        v_target := _release_target(p_to);

        -- Maintenance on and proved: a probe order is refused with maintenance_mode.
        IF NOT (SELECT maintenance_mode FROM system_settings) THEN
            PERFORM _release_refuse('maintenance_off',
                'maintenance mode is off: switch it on (maintenance on) so that no order executes during the revert');
        END IF;
        v_probe := probe_new_orders();
        IF (v_probe ->> 'executed')::boolean OR v_probe ->> 'error_code' IS DISTINCT FROM 'maintenance_mode' THEN
            PERFORM _release_refuse('maintenance_not_verified',
                'a probe order was not refused with maintenance_mode: ' || v_probe::text);
        END IF;
        -- Executions in flight hold ROW SHARE on both; wait for them (never cut them), and
        -- give up after the lock timeout.
        PERFORM set_config('lock_timeout', '5s', true);
        LOCK TABLE system_settings, instruments IN EXCLUSIVE MODE;
        -- Once more under the lock, with a snapshot taken after it: a rollback that committed
        -- while this one waited has reverted these releases already (it must not answer that
        -- it did it again), and maintenance may have been switched off meanwhile.
        v_target := _release_target(p_to);
        IF NOT (SELECT maintenance_mode FROM system_settings) THEN
            PERFORM _release_refuse('maintenance_off',
                'maintenance mode was switched off while the revert waited; nothing changed');
        END IF;

        -- Drift: an object changed since the release that changed it last was deployed.
        v_drift := _release_drift_since(v_target);
        IF jsonb_array_length(v_drift) > 0 AND NOT p_accept_drift THEN
            PERFORM _release_refuse('drift',
                (SELECT 'changed by hand since deployed: ' || string_agg(x ->> 'kind' || ' ' || (x ->> 'identity'), ', ')
                 FROM jsonb_array_elements(v_drift) x) || '; the revert would discard those changes',
                jsonb_build_object('drift', v_drift));
        END IF;

        FOR r IN SELECT * FROM active_releases WHERE id > v_target ORDER BY id DESC LOOP
            -- What this release added that holds data: archived, checked, then dropped.
            -- (The columns of a table it added are in that table's rows, archived once.)
            FOR e IN SELECT o.* FROM release_objects o
                     WHERE o.release_id = r.id AND o.before_def IS NULL AND o.kind IN ('column', 'table')
                       AND NOT (o.kind = 'column' AND EXISTS (
                               SELECT 1 FROM release_objects x WHERE x.release_id = r.id AND x.kind = 'table'
                                 AND x.identity = o.rel AND x.before_def IS NULL))
                     ORDER BY o.kind, o.identity LOOP
                IF EXISTS (SELECT 1 FROM _release_catalog() c2 WHERE c2.kind = e.kind AND c2.identity = e.identity) THEN
                    v_archived := v_archived || (_release_archive(r.id, e.kind, e.rel, e.attr, e.after_def)
                                                 || jsonb_build_object('release', r.name));
                END IF;
            END LOOP;

            -- Rows deleted or updated, tables rewritten or truncated, columns or tables dropped
            -- by the script that this release did not add (and so nothing archived): refused.
            SELECT jsonb_object_agg(t.oid::text, jsonb_build_array(t.relname, t.relfilenode,
                       pg_stat_get_xact_tuples_deleted(t.oid) + pg_stat_get_xact_tuples_updated(t.oid)))
            INTO v_before
            FROM pg_class t WHERE t.relnamespace = 'public'::regnamespace AND t.relkind = 'r';
            SELECT jsonb_agg(c2.kind || ' ' || c2.identity) INTO v_after
            FROM _release_catalog() c2
            WHERE c2.kind IN ('column', 'table')
              AND NOT EXISTS (SELECT 1 FROM release_objects o WHERE o.release_id = r.id AND o.before_def IS NULL
                                AND o.kind = c2.kind AND o.identity = c2.identity);
            -- The same by identity (table oid, column number), not only by name: a script that
            -- drops a column or table it did not add and creates it again under the same name
            -- and definition leaves a catalog that reads the same, every value gone.
            SELECT jsonb_agg(jsonb_build_array(k.oid, k.attnum, k.name)) INTO v_kept
            FROM (SELECT t.oid, NULL::int2 AS attnum, t.relname::text AS name
                  FROM pg_class t
                  WHERE t.relnamespace = 'public'::regnamespace AND t.relkind IN ('r', 'p')
                  UNION ALL
                  SELECT t.oid, a.attnum, t.relname || '.' || a.attname
                  FROM pg_class t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
                  WHERE t.relnamespace = 'public'::regnamespace AND t.relkind IN ('r', 'p')) k
            JOIN pg_class t ON t.oid = k.oid
            WHERE NOT _release_machinery('table', t.relname, t.relname)
              AND NOT EXISTS (SELECT 1 FROM release_objects o WHERE o.release_id = r.id AND o.before_def IS NULL
                                AND ((o.kind = 'table' AND o.identity = t.relname)
                                     OR (o.kind = 'column' AND o.identity = k.name)));

            PERFORM _release_exec(r.revert_sql);

            SELECT string_agg(b.value ->> 0, ', ') INTO v_bad
            FROM jsonb_each(v_before) b
            JOIN pg_class t ON t.oid = b.key::oid
            WHERE NOT _release_machinery('table', t.relname, t.relname)
              AND (t.relfilenode <> (b.value ->> 1)::oid
                   OR pg_stat_get_xact_tuples_deleted(t.oid) + pg_stat_get_xact_tuples_updated(t.oid)
                      <> (b.value ->> 2)::bigint);
            IF v_bad IS NOT NULL THEN
                PERFORM _release_refuse('data_loss',
                    format('the revert script of %s deleted, updated, truncated or rewrote rows of %s, which nothing archived; nothing was changed',
                           r.name, v_bad));
            END IF;
            SELECT string_agg(k.value #>> '{}', ', ') INTO v_bad
            FROM jsonb_array_elements(coalesce(v_after, '[]')) k
            WHERE NOT EXISTS (SELECT 1 FROM _release_catalog() c2 WHERE c2.kind || ' ' || c2.identity = k.value #>> '{}');
            IF v_bad IS NOT NULL THEN
                PERFORM _release_refuse('data_loss',
                    format('the revert script of %s drops %s, which %s did not add, so nothing archived its values; nothing was changed',
                           r.name, v_bad, r.name));
            END IF;
            SELECT string_agg(DISTINCT k.value ->> 2, ', ') INTO v_bad
            FROM jsonb_array_elements(coalesce(v_kept, '[]')) k
            WHERE NOT EXISTS (SELECT 1 FROM pg_class t WHERE t.oid = (k.value ->> 0)::oid)
               OR (k.value ->> 1 IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = (k.value ->> 0)::oid
                                     AND a.attnum = (k.value ->> 1)::int2 AND NOT a.attisdropped));
            IF v_bad IS NOT NULL THEN
                PERFORM _release_refuse('data_loss',
                    format('the revert script of %s drops and creates again %s, which %s did not add, so nothing archived its values; nothing was changed',
                           r.name, v_bad, r.name));
            END IF;

            -- Functions go back to their exact recorded definition whatever the script did;
            -- what the release added and the script left is dropped (its data archived above).
            FOR e IN SELECT o.* FROM release_objects o WHERE o.release_id = r.id ORDER BY o.kind, o.identity LOOP
                SELECT c2.checksum INTO v_bad FROM _release_catalog() c2 WHERE c2.kind = e.kind AND c2.identity = e.identity;
                IF NOT FOUND THEN v_bad := NULL; END IF;
                CONTINUE WHEN v_bad IS NOT DISTINCT FROM e.before_sum;
                IF e.kind = 'function' AND e.before_ddl IS NOT NULL THEN
                    EXECUTE e.before_ddl;
                ELSIF e.before_def IS NULL AND v_bad IS NOT NULL THEN
                    CASE e.kind
                        WHEN 'function' THEN EXECUTE format('DROP FUNCTION %s', e.identity);
                        WHEN 'index' THEN EXECUTE format('DROP INDEX public.%I', e.identity);
                        WHEN 'constraint' THEN EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT %I', e.rel, e.attr);
                        WHEN 'column' THEN EXECUTE format('ALTER TABLE public.%I DROP COLUMN %I', e.rel, e.attr);
                        WHEN 'table' THEN EXECUTE format('DROP TABLE public.%I', e.rel);
                        WHEN 'trigger' THEN EXECUTE format('DROP TRIGGER %I ON public.%I', e.attr, e.rel);
                        WHEN 'view' THEN EXECUTE format('DROP VIEW public.%I', e.rel);
                    END CASE;
                END IF;
            END LOOP;

            INSERT INTO release_reverts (release_id, target_id, reverted_by, reason, operation_id, accepted_drift)
            VALUES (r.id, v_target, v_operator, p_reason, p_operation, v_drift);
            v_reverted := v_reverted || jsonb_build_object('id', r.id, 'name', r.name, 'service_version', r.service_version);
        END LOOP;

        -- The proof: every object the reverted releases changed is the target's again.
        FOR c IN
            SELECT o.kind, o.identity, (array_agg(o.before_sum ORDER BY o.release_id))[1] AS expected_sum
            FROM release_objects o
            WHERE o.release_id IN (SELECT (x ->> 'id')::bigint FROM jsonb_array_elements(v_reverted) x)
            GROUP BY o.kind, o.identity ORDER BY o.kind, o.identity
        LOOP
            SELECT c2.checksum INTO v_bad FROM _release_catalog() c2 WHERE c2.kind = c.kind AND c2.identity = c.identity;
            IF NOT FOUND THEN v_bad := NULL; END IF;
            v_checks := v_checks || jsonb_build_object('kind', c.kind, 'identity', c.identity,
                                                       'expected_sum', c.expected_sum, 'current_sum', v_bad,
                                                       'ok', v_bad IS NOT DISTINCT FROM c.expected_sum);
        END LOOP;
        SELECT string_agg(x ->> 'kind' || ' ' || (x ->> 'identity'), ', ') INTO v_bad
        FROM jsonb_array_elements(v_checks) x WHERE NOT (x ->> 'ok')::boolean;
        IF v_bad IS NOT NULL THEN
            PERFORM _release_refuse('revert_incomplete',
                'after the revert these differ from the target release, so nothing was changed: ' || v_bad,
                jsonb_build_object('checks', v_checks));
        END IF;

        BEGIN
            PERFORM _release_exec((SELECT verify_sql FROM releases WHERE id = v_target));
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
            PERFORM _release_refuse('verify_failed',
                format('the verify script of %s failed after the revert, so nothing was changed: %s', p_to, _printable(v_msg)));
        END;

        PERFORM set_config('lock_timeout', v_lock, true);
        v_result := jsonb_build_object(
            'success', true, 'dry_run', p_dry_run, 'target', p_to,
            'target_service_version', (SELECT service_version FROM releases WHERE id = v_target),
            'reverted', v_reverted, 'archived', v_archived, 'checks', v_checks, 'drift', v_drift,
            'operator', v_operator, 'login', session_user::text, 'at', clock_timestamp());
        IF p_dry_run THEN
            RAISE EXCEPTION USING ERRCODE = 'IC002', MESSAGE = 'release rollback rehearsed and undone';
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'IC002' THEN
            RETURN v_result;
        WHEN SQLSTATE 'IC100' THEN
            GET STACKED DIAGNOSTICS v_code = MESSAGE_TEXT, v_msg = PG_EXCEPTION_DETAIL, v_extra = PG_EXCEPTION_HINT;
            PERFORM set_config('lock_timeout', v_lock, true);
            RETURN _refusal(v_code, v_msg, coalesce(nullif(v_extra, '')::jsonb, '{}') || jsonb_build_object('dry_run', p_dry_run));
        WHEN lock_not_available THEN
            PERFORM set_config('lock_timeout', v_lock, true);
            RETURN _refusal('executions_in_flight',
                'executions or other sessions held the book for 5 s and the revert gave up; nothing changed; try again',
                jsonb_build_object('dry_run', p_dry_run));
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
            PERFORM set_config('lock_timeout', v_lock, true);
            RETURN _refusal('revert_failed', 'the revert failed, so nothing was changed: ' || _printable(v_msg),
                            jsonb_build_object('dry_run', p_dry_run));
    END;
    RETURN v_result;
END
$$;

-- Puts the values archived when p_release was last reverted back, now that it is deployed
-- again: only into rows whose value is NULL (never over newer data), checked by count and
-- checksum against the archive.
CREATE FUNCTION release_restore(p_release text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET bytea_output = 'hex' SET standard_conforming_strings = on SET array_nulls = on SET transform_null_equals = off
SET quote_all_identifiers = off AS $$
DECLARE
    v_id      bigint;
    s         record;
    v_key     text;
    v_type    text;
    v_n       bigint;
    v_sum     numeric;
    v_done    jsonb := '[]';
    v_code    text;
    v_msg     text;
    v_extra   text;
BEGIN
    SELECT id INTO v_id FROM active_releases WHERE name = p_release;
    IF NOT FOUND THEN
        RETURN _refusal('unknown_release', format('release %s is not deployed: deploy it again first', _printable(coalesce(p_release, ''))));
    END IF;
    BEGIN
        FOR s IN
            SELECT a.* FROM release_archive.archive_sets a JOIN releases r ON r.id = a.release_id
            WHERE r.name = p_release AND a.release_id < v_id
              AND NOT EXISTS (SELECT 1 FROM release_archive.restores x WHERE x.set_id = a.id)
            ORDER BY a.id
        LOOP
            SELECT k.expr INTO v_key
            FROM _release_key(s.rel, CASE WHEN s.kind = 'column' THEN _release_added_columns(s.release_id, s.rel) END) k;
            IF s.kind = 'column' THEN
                SELECT c.definition INTO v_type FROM _release_catalog() c WHERE c.kind = 'column' AND c.identity = s.rel || '.' || s.attr;
                IF v_type IS DISTINCT FROM s.definition THEN
                    PERFORM _release_refuse('restore_mismatch', format('%s.%s is %s now, it was %s when archived',
                        s.rel, s.attr, coalesce(v_type, 'missing'), s.definition));
                END IF;
                SELECT format_type(a.atttypid, a.atttypmod) INTO v_type FROM pg_attribute a
                WHERE a.attrelid = format('public.%I', s.rel)::regclass AND a.attname = s.attr;
                EXECUTE format('UPDATE public.%I t SET %I = a.value::%s FROM release_archive.archived_values a
                                WHERE a.set_id = $1 AND %s = a.row_key AND t.%I IS NULL', s.rel, s.attr, v_type, v_key, s.attr)
                    USING s.id;
                GET DIAGNOSTICS v_n = ROW_COUNT;
                EXECUTE format('SELECT count(*), coalesce(sum(_release_hash(a.row_key::text || ''='' || t.%I::text)), 0)
                                FROM public.%I t JOIN release_archive.archived_values a ON a.set_id = $1 AND %s = a.row_key
                                WHERE t.%I IS NOT NULL', s.attr, s.rel, v_key, s.attr)
                    INTO v_n, v_sum USING s.id;
            ELSE
                EXECUTE format('INSERT INTO public.%I SELECT (jsonb_populate_record(NULL::public.%I, a.value::jsonb)).*
                                FROM release_archive.archived_values a WHERE a.set_id = $1', s.rel, s.rel)
                    USING s.id;
                -- Only the rows of the archive: the table may have gained rows since it was
                -- deployed again (a row under an archived key made the INSERT fail).
                EXECUTE format('SELECT count(*), coalesce(sum(_release_hash(%s::text || ''='' || to_jsonb(t)::text)), 0)
                                FROM public.%I t
                                WHERE %s IN (SELECT a.row_key FROM release_archive.archived_values a WHERE a.set_id = $1)',
                               v_key, s.rel, v_key)
                    INTO v_n, v_sum USING s.id;
            END IF;
            IF v_n <> s.row_count OR v_sum <> s.checksum THEN
                PERFORM _release_refuse('restore_mismatch',
                    format('%s: %s values restored with checksum %s, the archive holds %s with checksum %s; nothing was restored',
                           coalesce(s.rel || '.' || s.attr, s.rel), v_n, v_sum, s.row_count, s.checksum));
            END IF;
            INSERT INTO release_archive.restores (set_id, release_id, restored_by, row_count, checksum)
            VALUES (s.id, v_id, _operator(), v_n, v_sum);
            v_done := v_done || jsonb_build_object('set_id', s.id, 'object', coalesce(s.rel || '.' || s.attr, s.rel),
                                                   'rows', v_n, 'checksum', v_sum::text);
        END LOOP;
    EXCEPTION
        WHEN SQLSTATE 'IC100' THEN
            GET STACKED DIAGNOSTICS v_code = MESSAGE_TEXT, v_msg = PG_EXCEPTION_DETAIL, v_extra = PG_EXCEPTION_HINT;
            RETURN _refusal(v_code, v_msg);
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
            RETURN _refusal('restore_failed', 'the restore failed, nothing was restored: ' || _printable(v_msg));
    END;
    RETURN jsonb_build_object('success', true, 'release', p_release, 'restored', v_done);
END
$$;

-- Whether the objects of the releases in effect are as they were deployed: every object a
-- release changed, with the checksum its newest release recorded and the one it has now.
CREATE FUNCTION release_drift()
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
    WITH last AS (
        SELECT DISTINCT ON (o.kind, o.identity) o.kind, o.identity, r.name, o.after_sum
        FROM release_objects o JOIN active_releases r ON r.id = o.release_id
        ORDER BY o.kind, o.identity, o.release_id DESC
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('kind', l.kind, 'identity', l.identity, 'release', l.name,
                                                 'recorded_sum', l.after_sum, 'current_sum', c.checksum,
                                                 'ok', l.after_sum IS NOT DISTINCT FROM c.checksum)
                              ORDER BY l.kind, l.identity), '[]')
    FROM last l LEFT JOIN _release_catalog() c ON c.kind = l.kind AND c.identity = l.identity
$$;

-- The current object definitions of the catalog (for show and diff in the client).
CREATE FUNCTION release_catalog()
RETURNS TABLE (kind text, identity text, definition text, checksum text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT c.kind, c.identity, c.definition, c.checksum FROM _release_catalog() c
$$;

-- Runs the verify script of the current release and undoes whatever it did.
CREATE FUNCTION release_verify_current()
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET bytea_output = 'hex' SET standard_conforming_strings = on SET array_nulls = on SET transform_null_equals = off
SET quote_all_identifiers = off AS $$
DECLARE
    v_release releases;
    v_msg     text;
BEGIN
    SELECT * INTO v_release FROM active_releases ORDER BY id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('success', true, 'release', NULL, 'verified', false);
    END IF;
    BEGIN
        PERFORM _release_exec(v_release.verify_sql);
        RAISE EXCEPTION USING ERRCODE = 'IC001', MESSAGE = 'verify undone';
    EXCEPTION
        WHEN SQLSTATE 'IC001' THEN NULL;
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
            RETURN jsonb_build_object('success', true, 'release', v_release.name, 'verified', false,
                                      'message', _printable(v_msg));
    END;
    RETURN jsonb_build_object('success', true, 'release', v_release.name, 'verified', true);
END
$$;

-- What the execution path does with a repeated idempotency key now, undone: a probe
-- account, one order, the same order again with the same key, then everything rolled back.
-- Maintenance mode is lifted inside the undone part only; the EXCLUSIVE locks keep every
-- real execution waiting meanwhile (they would not see it anyway: it never commits).
CREATE FUNCTION release_probe_idempotency()
RETURNS jsonb LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_user    uuid := gen_random_uuid();
    v_key     text := 'release-probe-' || gen_random_uuid()::text;
    v_symbol  text;
    v_first   jsonb;
    v_second  jsonb;
    v_count   bigint;
    v_lock    text := current_setting('lock_timeout');
BEGIN
    PERFORM set_config('lock_timeout', '5s', true);
    BEGIN
        LOCK TABLE system_settings, instruments IN EXCLUSIVE MODE;
        SELECT symbol INTO v_symbol FROM instruments WHERE tradable ORDER BY symbol <> 'EURUSD', symbol LIMIT 1;
        UPDATE system_settings SET maintenance_mode = false, maintenance_since = NULL;
        UPDATE instruments SET suspended_since = NULL, suspended_reason = NULL, suspended_by = NULL,
                               suspended_by_login = NULL WHERE symbol = v_symbol;
        PERFORM create_drill_account(v_user, 1000000);
        v_first := execute_order_atomic(v_user, v_symbol, 'market', 'buy', 1, 1, v_key, NULL);
        v_second := execute_order_atomic(v_user, v_symbol, 'market', 'buy', 1, 1, v_key, NULL);
        SELECT count(*) INTO v_count FROM orders WHERE user_id = v_user AND status = 'executed';
        RAISE EXCEPTION USING ERRCODE = 'IC001', MESSAGE = 'probe undone';
    EXCEPTION
        WHEN SQLSTATE 'IC001' THEN NULL;
        WHEN lock_not_available THEN
            PERFORM set_config('lock_timeout', v_lock, true);
            RETURN _refusal('executions_in_flight', 'the book was busy for 5 s; the probe gave up');
    END;
    PERFORM set_config('lock_timeout', v_lock, true);
    RETURN jsonb_build_object('success', true, 'symbol', v_symbol, 'first', v_first, 'second', v_second,
                              'executions', v_count,
                              'same_order', (v_first ->> 'order_id') IS NOT DISTINCT FROM (v_second ->> 'order_id'));
END
$$;

REVOKE EXECUTE ON FUNCTION _release_catalog(), _release_snapshot(), _release_hash(text),
    _release_exec(text), _release_refuse(text, text, jsonb), _release_machinery(text, text, text), _release_key(text, text[]),
    _release_added_columns(bigint, text),
    _release_archive(bigint, text, text, text, text), _release_expectations(bigint), _release_drift_since(bigint), _release_target(text),
    release_deploy(text, text, text, text, text, text, timestamptz), release_revert_precheck(text),
    release_rollback(text, text, boolean, boolean, uuid), release_restore(text), release_drift(),
    release_catalog(), release_verify_current(), release_probe_idempotency() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION release_revert_precheck(text), release_drift(), release_catalog(),
    release_verify_current() TO incident_viewer;
GRANT EXECUTE ON FUNCTION release_rollback(text, text, boolean, boolean, uuid), release_probe_idempotency()
    TO incident_operator;
GRANT SELECT ON releases, release_objects, release_reverts, active_releases TO incident_viewer;
GRANT USAGE ON SCHEMA release_archive TO incident_viewer;
GRANT SELECT ON release_archive.archive_sets, release_archive.restores TO incident_viewer;

RESET ROLE;
