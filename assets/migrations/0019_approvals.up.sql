-- Four-eyes approval, enforced by the database (issue 12).
--
-- A policy (set by the owner) says which work needs a second person. Work that needs one
-- is filed as a request with its exact scope: the orders (or the release, or the breaker),
-- what they refund as the server counts it, the reason. A different person (another
-- database login AND another operator name) approves or denies it with a reason. An
-- approval names the operation that will use it (the id a batch or single rollback runs
-- under, incident.batch_id / release_rollback's p_operation), covers only its scope, is
-- used by one operation only, and expires.
--
-- The rollback functions check it in _rollback_locked_orders, the step every rollback
-- takes before it moves money, so psql cannot go round it: work under an approved
-- operation must be inside its scope; any other rollback is unapproved, and a login's
-- unapproved rollbacks are kept within a budget (policy: orders, money and operations in a
-- window). At Level 3 (an open Level 3 incident in incident_events, or the level a client
-- declares) every group rollback, and every batch past its first order, needs approval.
--
-- What the adversarial pass found before release (tests/integration/adversary_approval.rs):
--   * a second login claiming the requester's name approved the request: names are compared
--     without the " (via login)" a claim is recorded with;
--   * calls of one login whose snapshots predate each other's commits (REPEATABLE READ,
--     SERIALIZABLE) each read the budget unspent; and the budget's advisory lock, keyed by
--     the login's name, could be held by any login to stop that login's rollbacks: a row
--     lock per login now (approval_budget_locks), which only the contract functions take,
--     and which raises a serialization failure for a snapshot older than its last charge;
--   * a login could file a request under the operation another login's batch ran under,
--     and stop that batch;
--   * a close of the breaker that read it closed waited for an opening, then closed it
--     without the approval Level 3 needs; two closes under one approval both closed it;
--   * a journal copy whose level was not 1, 2 or 3 made every rollback fail;
--   * an approval to roll back to a release also reverted a release deployed after it was
--     approved (and, accepting drift, discarded a change made by hand after it), and an
--     approval to close the breaker closed an opening after the one it was asked for: the
--     scope of each is now the releases reverted with their drift / the opening.
SET LOCAL ROLE incident_owner;

CREATE TABLE approval_policy (
    id                    boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled               boolean NOT NULL DEFAULT true,
    release_rollback      boolean NOT NULL DEFAULT true,
    level3_batches        boolean NOT NULL DEFAULT true,
    level3_breaker_close  boolean NOT NULL DEFAULT true,
    batch_orders          integer NOT NULL DEFAULT 100 CHECK (batch_orders BETWEEN 1 AND 1000000),
    batch_refunded        numeric(20,8) NOT NULL DEFAULT 100000 CHECK (batch_refunded > 0),
    single_limit          integer NOT NULL DEFAULT 20 CHECK (single_limit BETWEEN 0 AND 100000),
    window_minutes        integer NOT NULL DEFAULT 10 CHECK (window_minutes BETWEEN 1 AND 1440),
    expiry_minutes        integer NOT NULL DEFAULT 30 CHECK (expiry_minutes BETWEEN 1 AND 1440),
    changed_at            timestamptz,
    changed_by            text
);
INSERT INTO approval_policy DEFAULT VALUES;
CREATE TRIGGER approval_policy_no_delete BEFORE DELETE OR TRUNCATE ON approval_policy
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE TABLE approval_requests (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    operation_id     uuid NOT NULL UNIQUE,
    kind             text NOT NULL CHECK (kind IN ('batch', 'group', 'release_rollback', 'breaker_close')),
    incident_id      text,
    level            smallint NOT NULL CHECK (level BETWEEN 1 AND 3),
    reason           text NOT NULL,
    target           text,
    order_count      integer NOT NULL DEFAULT 0,
    executed_count   integer NOT NULL DEFAULT 0,
    refunded         numeric(20,8) NOT NULL DEFAULT 0,
    scope_hash       text NOT NULL,
    preview          jsonb NOT NULL DEFAULT '{}'::jsonb,
    required_because jsonb NOT NULL DEFAULT '[]'::jsonb,
    requested_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    requested_by     text NOT NULL,
    requested_login  text NOT NULL DEFAULT session_user,
    expires_at       timestamptz NOT NULL,
    decision         text CHECK (decision IN ('approved', 'denied', 'cancelled')),
    decided_at       timestamptz,
    decided_by       text,
    decided_login    text,
    decision_reason  text,
    decider_incident text,
    used_at          timestamptz,
    CHECK ((decision IS NULL) = (decided_at IS NULL)),
    CHECK (used_at IS NULL OR decision = 'approved')
);
CREATE INDEX approval_requests_open ON approval_requests (requested_at) WHERE decision IS NULL;
CREATE TRIGGER approval_requests_no_delete BEFORE DELETE OR TRUNCATE ON approval_requests
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE TABLE approval_orders (
    request_id uuid NOT NULL REFERENCES approval_requests (id),
    order_id   uuid NOT NULL,
    user_id    uuid NOT NULL,
    PRIMARY KEY (request_id, order_id)
);
CREATE TRIGGER approval_orders_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON approval_orders
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE TABLE approval_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    request_id uuid NOT NULL REFERENCES approval_requests (id),
    action     text NOT NULL CHECK (action IN ('requested', 'approved', 'denied', 'cancelled', 'used')),
    operator   text NOT NULL,
    login      text NOT NULL DEFAULT session_user,
    reason     text,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER approval_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON approval_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- What each login rolled back without an approval, for its budget.
CREATE TABLE unapproved_rollbacks (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    login     text NOT NULL DEFAULT session_user,
    operation uuid,
    orders    integer NOT NULL,
    refunded  numeric(20,8) NOT NULL
);
CREATE INDEX unapproved_rollbacks_login_at ON unapproved_rollbacks (login, at);
CREATE INDEX unapproved_rollbacks_operation ON unapproved_rollbacks (operation) WHERE operation IS NOT NULL;
CREATE TRIGGER unapproved_rollbacks_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON unapproved_rollbacks
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- One row per login that rolled back without an approval: the lock its budget is taken
-- under. A row lock only the contract functions can take (an advisory lock keyed by the
-- login's name could be held by any login, stopping that login's rollbacks); and under
-- REPEATABLE READ or SERIALIZABLE its update raises a serialization failure when another
-- call of the login charged the budget after this transaction's snapshot, which would
-- otherwise read the budget unspent (the client's retry reads it).
CREATE TABLE approval_budget_locks (
    login      text PRIMARY KEY,
    charged_at timestamptz NOT NULL
);

-- What an approval of a release rollback covers: its target, the releases it reverts, and
-- the drift it would discard (objects changed by hand since deployed, with their checksums).
CREATE FUNCTION _release_scope(p_to text, p_ids bigint[], p_drift jsonb)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT md5('release:' || p_to || ':' || coalesce((SELECT string_agg(i::text, ',' ORDER BY i) FROM unnest(p_ids) i), '')
               || ':' || coalesce(p_drift, '[]'::jsonb)::text)
$$;

-- What an approval to close the breaker covers: the opening it was asked for (the moment
-- it opened, independent of the session's time zone and date style).
CREATE FUNCTION _breaker_scope()
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT md5('breaker_close:' || coalesce(to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), 'closed'))
    FROM circuit_breaker
$$;

-- The highest level among the incidents still open in the journal copy (opened or
-- re-classified within a week and not closed); 0 for none.
CREATE FUNCTION _open_incident_level()
RETURNS integer LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(max(level), 0)::integer FROM (
        SELECT DISTINCT ON (incident_id) incident_id,
               CASE kind WHEN 'incident_opened' THEN (data ->> 'level')::integer
                         WHEN 'level_changed' THEN (data ->> 'to')::integer
                         ELSE 0 END AS level
        FROM incident_events
        -- Only a level the journal writes (1, 2 or 3): any login copies its own journal, and
        -- a cast of anything else would make every rollback fail.
        WHERE ((kind = 'incident_opened' AND data ->> 'level' ~ '^[123]$')
               OR (kind = 'level_changed' AND data ->> 'to' ~ '^[123]$')
               OR kind = 'incident_closed')
          AND at > pg_catalog.now() - interval '7 days'
        ORDER BY incident_id, seq DESC
    ) latest
    WHERE level BETWEEN 1 AND 3
$$;

-- What a login has rolled back unapproved within the policy's window.
CREATE FUNCTION _unapproved_used(p_window integer,
    OUT operations integer, OUT orders integer, OUT refunded numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT (count(DISTINCT operation) + count(*) FILTER (WHERE operation IS NULL))::integer,
           coalesce(sum(u.orders), 0)::integer, coalesce(sum(u.refunded), 0)
    FROM unapproved_rollbacks u
    WHERE u.login = session_user::text AND u.at > clock_timestamp() - make_interval(mins => p_window)
$$;

-- Why work of this kind and size needs an approval (an empty array: it does not).
-- p_level is the level the caller knows; the server's open level counts too.
CREATE FUNCTION _approval_reasons(p_kind text, p_orders integer, p_refunded numeric, p_level integer,
                                  p_operation uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_policy approval_policy;
    v_level  integer := greatest(coalesce(p_level, 0), _open_incident_level());
    v_used   record;
    v_new_op integer;
    v_why    jsonb := '[]';
BEGIN
    SELECT * INTO v_policy FROM approval_policy;
    IF NOT v_policy.enabled THEN
        RETURN v_why;
    END IF;
    IF p_kind = 'release_rollback' THEN
        IF v_policy.release_rollback THEN
            v_why := v_why || to_jsonb('every release rollback needs a second person'::text);
        END IF;
        RETURN v_why;
    END IF;
    IF p_kind = 'breaker_close' THEN
        IF v_policy.level3_breaker_close AND v_level >= 3 THEN
            v_why := v_why || to_jsonb('closing the circuit breaker at Level 3 needs a second person'::text);
        END IF;
        RETURN v_why;
    END IF;
    IF v_policy.level3_batches AND v_level >= 3 AND p_kind IN ('batch', 'group') THEN
        v_why := v_why || to_jsonb(format('every %s rollback at Level 3 needs a second person',
                                          CASE p_kind WHEN 'batch' THEN 'batch' ELSE 'group' END));
    END IF;
    IF p_orders > v_policy.batch_orders THEN
        v_why := v_why || to_jsonb(format('%s orders is more than the %s one person may roll back',
                                          p_orders, v_policy.batch_orders));
    END IF;
    IF p_refunded > v_policy.batch_refunded THEN
        v_why := v_why || to_jsonb(format('%s refunded is more than the %s one person may refund',
                                          _money(p_refunded), _money(v_policy.batch_refunded)));
    END IF;
    SELECT * INTO v_used FROM _unapproved_used(v_policy.window_minutes);
    v_new_op := CASE WHEN p_operation IS NOT NULL AND EXISTS (
                         SELECT 1 FROM unapproved_rollbacks u
                         WHERE u.login = session_user::text AND u.operation = p_operation
                           AND u.at > clock_timestamp() - make_interval(mins => v_policy.window_minutes))
                     THEN 0 ELSE 1 END;
    IF v_used.operations + v_new_op > v_policy.single_limit THEN
        v_why := v_why || to_jsonb(format('this login already made %s rollbacks without approval in %s minutes (limit %s)',
                                          v_used.operations, v_policy.window_minutes, v_policy.single_limit));
    ELSIF v_used.orders + p_orders > v_policy.batch_orders AND p_orders <= v_policy.batch_orders THEN
        v_why := v_why || to_jsonb(format('this login already rolled back %s orders without approval in %s minutes (limit %s)',
                                          v_used.orders, v_policy.window_minutes, v_policy.batch_orders));
    ELSIF v_used.refunded + p_refunded > v_policy.batch_refunded AND p_refunded <= v_policy.batch_refunded THEN
        v_why := v_why || to_jsonb(format('this login already refunded %s without approval in %s minutes (limit %s)',
                                          _money(v_used.refunded), v_policy.window_minutes, _money(v_policy.batch_refunded)));
    END IF;
    RETURN v_why;
END
$$;

-- The policy, with the level the server sees open and what this login has left.
CREATE FUNCTION approval_policy_show()
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_policy approval_policy;
    v_used   record;
BEGIN
    SELECT * INTO v_policy FROM approval_policy;
    SELECT * INTO v_used FROM _unapproved_used(v_policy.window_minutes);
    RETURN to_jsonb(v_policy) - 'id'
        || jsonb_build_object('batch_refunded', _money(v_policy.batch_refunded),
                              'open_level', _open_incident_level(),
                              'login', session_user::text,
                              'used', jsonb_build_object('operations', v_used.operations, 'orders', v_used.orders,
                                                         'refunded', _money(v_used.refunded)));
END
$$;

-- The owner sets the policy: members of p_policy replace the stored values.
CREATE FUNCTION set_approval_policy(p_policy jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_unknown text;
BEGIN
    IF p_policy IS NULL OR jsonb_typeof(p_policy) <> 'object' THEN
        RETURN _refusal('invalid_argument', 'the policy is a JSON object');
    END IF;
    SELECT string_agg(k, ', ') INTO v_unknown FROM jsonb_object_keys(p_policy) AS k
    WHERE k NOT IN ('enabled', 'release_rollback', 'level3_batches', 'level3_breaker_close', 'batch_orders',
                    'batch_refunded', 'single_limit', 'window_minutes', 'expiry_minutes');
    IF v_unknown IS NOT NULL THEN
        RETURN _refusal('invalid_argument', 'unknown policy settings: ' || v_unknown);
    END IF;
    UPDATE approval_policy p SET
        enabled = coalesce((p_policy ->> 'enabled')::boolean, p.enabled),
        release_rollback = coalesce((p_policy ->> 'release_rollback')::boolean, p.release_rollback),
        level3_batches = coalesce((p_policy ->> 'level3_batches')::boolean, p.level3_batches),
        level3_breaker_close = coalesce((p_policy ->> 'level3_breaker_close')::boolean, p.level3_breaker_close),
        batch_orders = coalesce((p_policy ->> 'batch_orders')::integer, p.batch_orders),
        batch_refunded = coalesce((p_policy ->> 'batch_refunded')::numeric, p.batch_refunded),
        single_limit = coalesce((p_policy ->> 'single_limit')::integer, p.single_limit),
        window_minutes = coalesce((p_policy ->> 'window_minutes')::integer, p.window_minutes),
        expiry_minutes = coalesce((p_policy ->> 'expiry_minutes')::integer, p.expiry_minutes),
        changed_at = clock_timestamp(),
        changed_by = _operator();
    RETURN jsonb_build_object('success', true, 'policy', approval_policy_show());
END
$$;

-- Whether work needs an approval, for a client deciding before it starts: the orders'
-- count and what they refund as the server counts them, and why.
CREATE FUNCTION approval_needed(p_kind text, p_order_ids uuid[], p_user_ids uuid[], p_level integer,
                                p_operation uuid DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_count    integer;
    v_refunded numeric;
    v_why      jsonb;
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('single', 'batch', 'group', 'release_rollback', 'breaker_close') THEN
        RETURN _refusal('invalid_argument', 'the kind is single, batch, group, release_rollback or breaker_close');
    END IF;
    IF cardinality(coalesce(p_order_ids, '{}')) <> cardinality(coalesce(p_user_ids, '{}')) THEN
        RETURN _refusal('invalid_argument', 'one user per order');
    END IF;
    SELECT count(*), coalesce(sum(o.total_cost), 0) INTO v_count, v_refunded
    FROM unnest(p_order_ids, p_user_ids) AS s(order_id, user_id)
    JOIN orders o ON o.id = s.order_id AND o.user_id = s.user_id AND o.status = 'executed';
    v_why := _approval_reasons(p_kind, v_count, v_refunded, p_level, p_operation);
    RETURN jsonb_build_object('required', jsonb_array_length(v_why) > 0, 'reasons', v_why,
                              'orders', v_count, 'refunded', _money(v_refunded),
                              'level', greatest(coalesce(p_level, 0), _open_incident_level()));
END
$$;

-- Files a request for a second person. p_refunded is what the requester was shown: the
-- request is refused (scope_changed) unless the server counts the same.
CREATE FUNCTION request_approval(p_kind text, p_operation uuid, p_order_ids uuid[], p_user_ids uuid[],
                                 p_target text, p_reason text, p_refunded numeric, p_level integer,
                                 p_incident text, p_preview jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_id       uuid := gen_random_uuid();
    v_target   bigint;
    v_count    integer := 0;
    v_executed integer := 0;
    v_refunded numeric := 0;
    v_hash     text;
    v_policy   approval_policy;
    v_why      jsonb;
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('batch', 'group', 'release_rollback', 'breaker_close') THEN
        RETURN _refusal('invalid_argument', 'the kind is batch, group, release_rollback or breaker_close');
    END IF;
    IF p_operation IS NULL THEN
        RETURN _refusal('invalid_argument', 'the operation that will use the approval is required');
    END IF;
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;
    IF p_level IS NULL OR p_level NOT BETWEEN 1 AND 3 THEN
        RETURN _refusal('invalid_argument', 'the level is 1, 2 or 3');
    END IF;
    IF p_incident IS NOT NULL AND p_incident !~ '^[A-Za-z0-9-]{1,64}$' THEN
        RETURN _refusal('invalid_argument', 'an incident id is letters, digits and dashes');
    END IF;
    IF p_preview IS NOT NULL AND (jsonb_typeof(p_preview) <> 'object' OR length(p_preview::text) > 20000) THEN
        RETURN _refusal('invalid_argument', 'the preview is a JSON object of at most 20,000 characters');
    END IF;
    IF EXISTS (SELECT 1 FROM approval_requests WHERE operation_id = p_operation) THEN
        RETURN _refusal('invalid_argument', 'this operation already has a request; a new scope needs a new operation');
    END IF;
    -- An operation another login's rollbacks already run under is that login's (its id is
    -- in the audit log): a request for it would stop the rest of that work.
    IF EXISTS (SELECT 1 FROM unapproved_rollbacks WHERE operation = p_operation AND login <> session_user::text) THEN
        RETURN _refusal('invalid_argument', 'another login''s rollbacks run under this operation; a request names an operation of its own');
    END IF;
    SELECT * INTO v_policy FROM approval_policy;
    IF p_kind IN ('batch', 'group') THEN
        IF cardinality(coalesce(p_order_ids, '{}')) = 0
           OR cardinality(p_order_ids) <> cardinality(coalesce(p_user_ids, '{}'))
           OR cardinality(p_order_ids) > 1000000 THEN
            RETURN _refusal('invalid_argument', 'between 1 and 1,000,000 orders, one user per order');
        END IF;
        IF p_target IS NOT NULL THEN
            RETURN _refusal('invalid_argument', 'a rollback of orders has no target');
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(p_order_ids, p_user_ids) AS s(o, u) WHERE o IS NULL OR u IS NULL) THEN
            RETURN _refusal('invalid_argument', 'an order or user id is missing');
        END IF;
        IF (SELECT count(DISTINCT o) FROM unnest(p_order_ids) AS o) <> cardinality(p_order_ids) THEN
            RETURN _refusal('invalid_argument', 'an order is named twice');
        END IF;
        SELECT count(o.id), count(o.id) FILTER (WHERE o.status = 'executed'),
               coalesce(sum(o.total_cost) FILTER (WHERE o.status = 'executed'), 0)
        INTO v_count, v_executed, v_refunded
        FROM unnest(p_order_ids, p_user_ids) AS s(order_id, user_id)
        LEFT JOIN orders o ON o.id = s.order_id AND o.user_id = s.user_id;
        IF v_count <> cardinality(p_order_ids) THEN
            RETURN _refusal('order_not_found', format('%s of the %s orders do not exist for the user named',
                                                     cardinality(p_order_ids) - v_count, cardinality(p_order_ids)));
        END IF;
        IF p_refunded IS NULL OR p_refunded <> v_refunded THEN
            RETURN _refusal('scope_changed',
                format('the server counts %s refunded by %s executed orders, not the %s shown; look again and file it anew',
                       _money(v_refunded), v_executed, coalesce(_money(p_refunded)::text, 'nothing')),
                jsonb_build_object('refunded', _money(v_refunded), 'executed', v_executed));
        END IF;
        SELECT md5(string_agg(o::text, ',' ORDER BY o)) INTO v_hash FROM unnest(p_order_ids) AS o;
    ELSIF p_kind = 'release_rollback' THEN
        IF p_target IS NULL OR p_target !~ '^[a-z0-9][a-z0-9._-]{0,99}$' OR p_order_ids IS NOT NULL THEN
            RETURN _refusal('invalid_argument', 'a release rollback names its target release and no orders');
        END IF;
        SELECT id INTO v_target FROM active_releases WHERE name = p_target;
        IF NOT FOUND THEN
            RETURN _refusal('invalid_argument', format('no deployed release named %s', p_target));
        END IF;
        -- The releases a rollback to the target reverts now, and the drift it would discard:
        -- a release deployed or reverted, or an object changed by hand, since is another scope.
        v_hash := _release_scope(p_target, ARRAY(SELECT a.id FROM active_releases a WHERE a.id > v_target),
                                 _release_drift_since(v_target));
    ELSE
        IF p_target IS NOT NULL OR p_order_ids IS NOT NULL THEN
            RETURN _refusal('invalid_argument', 'closing the breaker names no orders and no target');
        END IF;
        IF NOT (SELECT open FROM circuit_breaker) THEN
            RETURN _refusal('invalid_argument', 'the circuit breaker is closed: there is nothing to approve');
        END IF;
        -- This opening: an approval does not close the breaker once it opened again.
        v_hash := _breaker_scope();
    END IF;
    v_why := _approval_reasons(p_kind, v_executed, v_refunded, p_level, p_operation);
    INSERT INTO approval_requests (id, operation_id, kind, incident_id, level, reason, target, order_count,
                                   executed_count, refunded, scope_hash, preview, required_because,
                                   requested_by, expires_at)
    VALUES (v_id, p_operation, p_kind, p_incident, p_level, _printable(p_reason), p_target,
            coalesce(cardinality(p_order_ids), 0), v_executed, v_refunded, v_hash,
            _printable_json(coalesce(p_preview, '{}'::jsonb)), v_why, _operator(),
            clock_timestamp() + make_interval(mins => v_policy.expiry_minutes));
    IF p_kind IN ('batch', 'group') THEN
        INSERT INTO approval_orders (request_id, order_id, user_id)
        SELECT v_id, o, u FROM unnest(p_order_ids, p_user_ids) AS s(o, u);
    END IF;
    INSERT INTO approval_log (request_id, action, operator, reason, detail)
    VALUES (v_id, 'requested', _operator(), _printable(p_reason),
            jsonb_build_object('kind', p_kind, 'orders', coalesce(cardinality(p_order_ids), 0),
                               'refunded', _money(v_refunded), 'target', p_target, 'incident', p_incident));
    PERFORM pg_notify('approvals', v_id::text);
    RETURN jsonb_build_object('success', true, 'id', v_id, 'operation_id', p_operation, 'kind', p_kind,
                              'orders', coalesce(cardinality(p_order_ids), 0), 'executed', v_executed,
                              'refunded', _money(v_refunded), 'scope_hash', v_hash, 'required_because', v_why,
                              'expires_at', clock_timestamp() + make_interval(mins => v_policy.expiry_minutes));
END
$$;

-- A second person approves or denies a request, with a reason. Never the person who asked:
-- another login and another operator name.
CREATE FUNCTION decide_approval(p_id uuid, p_approve boolean, p_reason text, p_incident text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_req    approval_requests;
    v_policy approval_policy;
    v_action text := CASE WHEN p_approve THEN 'approved' ELSE 'denied' END;
BEGIN
    IF p_approve IS NULL THEN
        RETURN _refusal('invalid_argument', 'say whether the request is approved');
    END IF;
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;
    IF p_incident IS NOT NULL AND p_incident !~ '^[A-Za-z0-9-]{1,64}$' THEN
        RETURN _refusal('invalid_argument', 'an incident id is letters, digits and dashes');
    END IF;
    SELECT * INTO v_req FROM approval_requests WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN _refusal('not_found', 'no such approval request');
    END IF;
    IF v_req.decision IS NOT NULL THEN
        RETURN _refusal('already_decided', format('this request was %s by %s', v_req.decision,
                                                  coalesce(v_req.decided_by, v_req.requested_by)));
    END IF;
    IF clock_timestamp() >= v_req.expires_at THEN
        RETURN _refusal('expired', 'this request expired; the requester files a new one');
    END IF;
    -- The name without the " (via login)" an unregistered claim is recorded with: a second
    -- login claiming the requester's name is the requester.
    IF v_req.requested_login = session_user::text
       OR lower(btrim(split_part(v_req.requested_by, ' (via ', 1))) = lower(btrim(split_part(_operator(), ' (via ', 1))) THEN
        RETURN _refusal('self_approval',
            'the person who asked cannot decide: another person, with another database login, must');
    END IF;
    SELECT * INTO v_policy FROM approval_policy;
    UPDATE approval_requests SET decision = v_action, decided_at = clock_timestamp(), decided_by = _operator(),
        decided_login = session_user::text, decision_reason = _printable(p_reason), decider_incident = p_incident,
        expires_at = CASE WHEN p_approve THEN clock_timestamp() + make_interval(mins => v_policy.expiry_minutes)
                          ELSE expires_at END
    WHERE id = p_id;
    INSERT INTO approval_log (request_id, action, operator, reason, detail)
    VALUES (p_id, v_action, _operator(), _printable(p_reason), jsonb_build_object('incident', p_incident));
    PERFORM pg_notify('approvals', p_id::text);
    RETURN jsonb_build_object('success', true, 'id', p_id, 'decision', v_action, 'operator', _operator(),
                              'login', session_user::text,
                              'expires_at', (SELECT expires_at FROM approval_requests WHERE id = p_id));
END
$$;

-- The requester withdraws a request that is not decided yet.
CREATE FUNCTION cancel_approval(p_id uuid, p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_req approval_requests;
BEGIN
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;
    SELECT * INTO v_req FROM approval_requests WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR v_req.requested_login <> session_user::text THEN
        RETURN _refusal('not_found', 'no such request of this login');
    END IF;
    IF v_req.decision IS NOT NULL THEN
        RETURN _refusal('already_decided', format('this request was %s', v_req.decision));
    END IF;
    UPDATE approval_requests SET decision = 'cancelled', decided_at = clock_timestamp(), decided_by = _operator(),
        decided_login = session_user::text, decision_reason = _printable(p_reason)
    WHERE id = p_id;
    INSERT INTO approval_log (request_id, action, operator, reason) VALUES (p_id, 'cancelled', _operator(), _printable(p_reason));
    PERFORM pg_notify('approvals', p_id::text);
    RETURN jsonb_build_object('success', true, 'id', p_id, 'decision', 'cancelled');
END
$$;

-- The approval of an operation, checked for a use: NULL when the operation has none, a
-- refusal when it does not cover this use, else the request (the caller checks orders
-- against approval_orders and marks the use once the work is done).
CREATE FUNCTION _claim_approval(p_operation uuid, p_kinds text[], p_target text)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_req approval_requests;
BEGIN
    IF p_kinds && ARRAY['release_rollback', 'breaker_close'] THEN
        -- Used once: a second use waits for the first to commit and reads it used (an older
        -- snapshot raises a serialization failure). A batch's approval is used by many calls
        -- at once, and only its first use is logged: no lock.
        SELECT * INTO v_req FROM approval_requests WHERE operation_id = p_operation FOR UPDATE;
    ELSE
        SELECT * INTO v_req FROM approval_requests WHERE operation_id = p_operation;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_req.kind <> ALL (p_kinds) OR v_req.target IS DISTINCT FROM p_target THEN
        RETURN _refusal('approval_required', format('the approval of this operation covers a %s, not this', v_req.kind),
                        jsonb_build_object('approval_id', v_req.id));
    END IF;
    IF v_req.requested_login <> session_user::text THEN
        RETURN _refusal('approval_required', 'an approval is used by the login that asked for it',
                        jsonb_build_object('approval_id', v_req.id));
    END IF;
    IF v_req.decision IS DISTINCT FROM 'approved' THEN
        RETURN _refusal('approval_required',
            format('approval request %s is %s', v_req.id, coalesce(v_req.decision, 'still waiting for a second person')),
            jsonb_build_object('approval_id', v_req.id, 'decision', v_req.decision));
    END IF;
    IF clock_timestamp() >= v_req.expires_at THEN
        RETURN _refusal('approval_required', format('the approval %s expired at %s', v_req.id,
                        to_char(v_req.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')),
                        jsonb_build_object('approval_id', v_req.id, 'expired', true));
    END IF;
    IF v_req.used_at IS NOT NULL AND v_req.kind IN ('release_rollback', 'breaker_close') THEN
        RETURN _refusal('approval_required', format('the approval %s was used already', v_req.id),
                        jsonb_build_object('approval_id', v_req.id, 'used', true));
    END IF;
    RETURN jsonb_build_object('approval_id', v_req.id, 'reason', v_req.reason, 'used', v_req.used_at IS NOT NULL,
                              'scope_hash', v_req.scope_hash);
END
$$;

-- Logs an approval's first use (a batch uses its approval for many calls, logged once).
CREATE FUNCTION _mark_approval_used(p_claim jsonb)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF p_claim IS NULL OR (p_claim ->> 'used')::boolean THEN
        RETURN;
    END IF;
    UPDATE approval_requests SET used_at = clock_timestamp()
    WHERE id = (p_claim ->> 'approval_id')::uuid AND used_at IS NULL;
    IF FOUND THEN
        INSERT INTO approval_log (request_id, action, operator, reason)
        VALUES ((p_claim ->> 'approval_id')::uuid, 'used', _operator(), p_claim ->> 'reason');
        PERFORM pg_notify('approvals', p_claim ->> 'approval_id');
    END IF;
END
$$;

-- Every rollback passes here before it moves money: the breaker (migration 18), then the
-- approval of its operation, else the login's budget for unapproved work.
CREATE OR REPLACE FUNCTION _rollback_locked_orders(
    p_user_id uuid, p_order_ids uuid[], p_reason text, p_mode text,
    p_transaction_id uuid, p_started timestamptz, p_extra jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_breaker    circuit_breaker;
    v_result     jsonb;
    v_violations jsonb;
    v_policy     approval_policy;
    v_operation  uuid := _batch_id();
    v_claim      jsonb;
    v_refunded   numeric;
    v_level      integer;
    v_why        jsonb;
    v_request    uuid;
    v_order      uuid;
BEGIN
    LOCK TABLE circuit_breaker IN ROW SHARE MODE;
    IF current_setting('transaction_isolation') = 'read committed' THEN
        SELECT * INTO v_breaker FROM circuit_breaker;
    ELSE
        -- A snapshot older than the switch: locking the row raises a serialization failure
        -- when it changed since, and the client's retry reads it open.
        SELECT * INTO v_breaker FROM circuit_breaker FOR SHARE;
    END IF;
    IF v_breaker.open THEN
        RETURN _refusal('breaker_open',
            format('the circuit breaker is open since %s: %s; nothing was rolled back (a person closes it with a reason)',
                   to_char(v_breaker.since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), v_breaker.reason),
            jsonb_build_object('breaker', jsonb_build_object('since', v_breaker.since, 'reason', v_breaker.reason,
                                                             'source', v_breaker.source, 'opened_by', v_breaker.opened_by)));
    END IF;

    SELECT * INTO v_policy FROM approval_policy;
    IF v_policy.enabled THEN
        -- A batch approval covers the groups inside its scope too.
        v_claim := CASE WHEN v_operation IS NOT NULL
                        THEN _claim_approval(v_operation, ARRAY['batch', 'group'], NULL) END;
        IF v_claim ? 'error_code' THEN
            RETURN v_claim;
        ELSIF v_claim IS NOT NULL THEN
            IF _printable(p_reason) IS DISTINCT FROM v_claim ->> 'reason' THEN
                RETURN _refusal('approval_required', 'the approval covers another reason',
                                jsonb_build_object('approval_id', v_claim -> 'approval_id'));
            END IF;
            -- One primary-key probe per order: a query over the request's rows would read
            -- all of them (a whole batch's) on every call, as the planner sees one request.
            v_request := (v_claim ->> 'approval_id')::uuid;
            FOREACH v_order IN ARRAY p_order_ids LOOP
                PERFORM 1 FROM approval_orders a
                WHERE a.request_id = v_request AND a.order_id = v_order AND a.user_id = p_user_id;
                IF NOT FOUND THEN
                    RETURN _refusal('approval_required',
                        'an order here is outside the approved scope: a changed set of orders needs a new approval',
                        jsonb_build_object('approval_id', v_claim -> 'approval_id'));
                END IF;
            END LOOP;
            p_extra := p_extra || jsonb_build_object('approval_id', v_claim -> 'approval_id');
        ELSIF NOT coalesce((SELECT is_drill FROM profiles WHERE id = p_user_id), false) THEN
            -- Unapproved: one login's budget, taken one call at a time under its row of
            -- approval_budget_locks (see there). (A drill account's money is practice: the
            -- sandbox's drills roll it back without a second person.)
            INSERT INTO approval_budget_locks AS b (login, charged_at) VALUES (session_user::text, clock_timestamp())
            ON CONFLICT (login) DO UPDATE SET charged_at = excluded.charged_at;
            SELECT coalesce(sum(total_cost), 0) INTO v_refunded FROM orders
            WHERE id = ANY (p_order_ids) AND user_id = p_user_id AND status = 'executed';
            v_level := _open_incident_level();
            IF v_policy.level3_batches AND v_level >= 3 AND v_operation IS NOT NULL AND EXISTS (
                    SELECT 1 FROM unapproved_rollbacks u
                    WHERE u.login = session_user::text AND u.operation = v_operation) THEN
                v_why := jsonb_build_array('every batch rollback at Level 3 needs a second person');
            ELSE
                v_why := _approval_reasons(CASE p_mode WHEN 'transaction' THEN 'group' ELSE 'single' END,
                                           cardinality(p_order_ids), v_refunded, v_level, v_operation);
            END IF;
            IF jsonb_array_length(v_why) > 0 THEN
                RETURN _refusal('approval_required',
                    'a second person must approve this first: ' || (SELECT string_agg(r, '; ') FROM jsonb_array_elements_text(v_why) AS r),
                    jsonb_build_object('reasons', v_why));
            END IF;
            INSERT INTO unapproved_rollbacks (operation, orders, refunded)
            VALUES (v_operation, cardinality(p_order_ids), v_refunded);
        END IF;
    END IF;

    v_result := _rollback_locked_orders_unguarded(p_user_id, p_order_ids, p_reason, p_mode, p_transaction_id,
                                                  p_started, p_extra);
    IF (v_result ->> 'success')::boolean AND v_claim IS NOT NULL THEN
        PERFORM _mark_approval_used(v_claim);
    END IF;
    -- Practice (sandbox breaker-drill): see migration 18.
    IF (v_result ->> 'success')::boolean AND EXISTS (
        SELECT 1 FROM orders o JOIN profiles p ON p.id = o.user_id
        WHERE o.id = ANY (p_order_ids) AND p.is_drill AND starts_with(o.idempotency_key, 'breaker-drill-')) THEN
        v_violations := jsonb_build_array(jsonb_build_object(
            'check_name', 'breaker_drill', 'user_id', p_user_id,
            'detail', 'a drill order whose post-check is made to fail (sandbox breaker-drill)'));
        PERFORM record_rollback_failure(p_order_ids[1], p_user_id, 'postcheck_failed',
                                        jsonb_build_object('violations', v_violations, 'orders', p_order_ids));
        v_result := v_result || jsonb_build_object('postcheck_failed', true, 'violations', v_violations,
                                                   'breaker_opened', true);
    END IF;
    RETURN v_result;
END
$$;

-- A release rollback needs its approval (unless only rehearsed).
ALTER FUNCTION release_rollback(text, text, boolean, boolean, uuid) RENAME TO _release_rollback_unguarded;
REVOKE EXECUTE ON FUNCTION _release_rollback_unguarded(text, text, boolean, boolean, uuid) FROM incident_operator;

CREATE FUNCTION release_rollback(p_to text, p_reason text, p_accept_drift boolean DEFAULT false,
                                 p_dry_run boolean DEFAULT false, p_operation uuid DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_claim    jsonb;
    v_why      jsonb;
    v_result   jsonb;
    v_reverted text;
BEGIN
    IF NOT coalesce(p_dry_run, true) THEN
        v_claim := CASE WHEN p_operation IS NOT NULL THEN _claim_approval(p_operation, ARRAY['release_rollback'], p_to) END;
        IF v_claim ? 'error_code' THEN
            RETURN v_claim;
        ELSIF v_claim IS NULL THEN
            v_why := _approval_reasons('release_rollback', 0, 0, 0, p_operation);
            IF jsonb_array_length(v_why) > 0 THEN
                RETURN _refusal('approval_required',
                    'a second person must approve this first: ' || (SELECT string_agg(r, '; ') FROM jsonb_array_elements_text(v_why) AS r),
                    jsonb_build_object('reasons', v_why));
            END IF;
        ELSIF _printable(p_reason) IS DISTINCT FROM v_claim ->> 'reason' THEN
            RETURN _refusal('approval_required', 'the approval covers another reason',
                            jsonb_build_object('approval_id', v_claim -> 'approval_id'));
        END IF;
    END IF;
    BEGIN
        v_result := _release_rollback_unguarded(p_to, p_reason, p_accept_drift, p_dry_run, p_operation);
        -- What was reverted is what was approved, checked on what the rollback did (so that
        -- nothing deployed between a check and its locks slips in); else all of it is undone.
        IF v_claim IS NOT NULL AND (v_result ->> 'success')::boolean
           AND _release_scope(p_to, ARRAY(SELECT (x ->> 'id')::bigint FROM jsonb_array_elements(v_result -> 'reverted') x),
                              v_result -> 'drift') IS DISTINCT FROM v_claim ->> 'scope_hash' THEN
            RAISE EXCEPTION USING ERRCODE = 'IC019', MESSAGE = (
                SELECT coalesce(string_agg(x ->> 'name', ', '), 'none') FROM jsonb_array_elements(v_result -> 'reverted') x);
        END IF;
    EXCEPTION WHEN SQLSTATE 'IC019' THEN
        GET STACKED DIAGNOSTICS v_reverted = MESSAGE_TEXT;
        RETURN _refusal('approval_required',
            format('the releases a rollback to %s reverts (now %s), or the changes made by hand it discards, are not those approved: a changed scope needs a new approval; nothing was changed',
                   _printable(p_to), _printable(v_reverted)),
            jsonb_build_object('approval_id', v_claim -> 'approval_id', 'scope_changed', true));
    END;
    IF v_claim IS NOT NULL AND (v_result ->> 'success')::boolean THEN
        PERFORM _mark_approval_used(v_claim);
        v_result := v_result || jsonb_build_object('approval_id', v_claim -> 'approval_id');
    END IF;
    RETURN v_result;
END
$$;

-- Closing the breaker at Level 3 needs its approval (the operation is incident.batch_id).
CREATE OR REPLACE FUNCTION close_breaker(p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_claim jsonb;
    v_why   jsonb;
BEGIN
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;
    -- The switch's lock first, then the breaker as it is: a close that read it closed and
    -- then waited for an opening would close it without the approval (an older snapshot
    -- raises a serialization failure here).
    LOCK TABLE circuit_breaker IN EXCLUSIVE MODE;
    IF NOT (SELECT open FROM circuit_breaker FOR UPDATE) THEN
        RETURN _switch_breaker(false, _printable(p_reason), 'person');
    END IF;
    v_claim := CASE WHEN _batch_id() IS NOT NULL THEN _claim_approval(_batch_id(), ARRAY['breaker_close'], NULL) END;
    IF v_claim ? 'error_code' THEN
        RETURN v_claim;
    ELSIF v_claim IS NULL THEN
        v_why := _approval_reasons('breaker_close', 0, 0, 0, NULL);
        IF jsonb_array_length(v_why) > 0 THEN
            RETURN _refusal('approval_required',
                'a second person must approve this first: ' || (SELECT string_agg(r, '; ') FROM jsonb_array_elements_text(v_why) AS r),
                jsonb_build_object('reasons', v_why));
        END IF;
    END IF;
    IF v_claim IS NOT NULL THEN
        IF _printable(p_reason) IS DISTINCT FROM v_claim ->> 'reason' THEN
            RETURN _refusal('approval_required', 'the approval covers another reason',
                            jsonb_build_object('approval_id', v_claim -> 'approval_id'));
        END IF;
        IF _breaker_scope() IS DISTINCT FROM v_claim ->> 'scope_hash' THEN
            RETURN _refusal('approval_required',
                'the breaker opened again since this approval was asked for: closing this opening needs a new approval',
                jsonb_build_object('approval_id', v_claim -> 'approval_id', 'scope_changed', true));
        END IF;
        PERFORM _mark_approval_used(v_claim);
        RETURN _switch_breaker(false, _printable(p_reason), 'person')
            || jsonb_build_object('approval_id', v_claim -> 'approval_id');
    END IF;
    RETURN _switch_breaker(false, _printable(p_reason), 'person');
END
$$;

REVOKE EXECUTE ON FUNCTION _open_incident_level(), _unapproved_used(integer), _release_scope(text, bigint[], jsonb),
    _breaker_scope(),
    _approval_reasons(text, integer, numeric, integer, uuid), approval_policy_show(), set_approval_policy(jsonb),
    approval_needed(text, uuid[], uuid[], integer, uuid),
    request_approval(text, uuid, uuid[], uuid[], text, text, numeric, integer, text, jsonb),
    decide_approval(uuid, boolean, text, text), cancel_approval(uuid, text), _claim_approval(uuid, text[], text),
    _mark_approval_used(jsonb),
    release_rollback(text, text, boolean, boolean, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION approval_policy_show(), approval_needed(text, uuid[], uuid[], integer, uuid)
    TO incident_viewer;
GRANT EXECUTE ON FUNCTION request_approval(text, uuid, uuid[], uuid[], text, text, numeric, integer, text, jsonb),
    decide_approval(uuid, boolean, text, text), cancel_approval(uuid, text),
    release_rollback(text, text, boolean, boolean, uuid) TO incident_operator;
GRANT SELECT ON approval_policy, approval_requests, approval_orders, approval_log TO incident_viewer;

RESET ROLE;
