-- Back to 0016: no releases. Refused once any release was recorded: the history of what
-- was deployed and reverted, and the values a revert archived, are never dropped.
SET LOCAL ROLE incident_owner;

LOCK TABLE releases, release_archive.archive_sets IN EXCLUSIVE MODE;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM releases) OR EXISTS (SELECT 1 FROM release_archive.archive_sets) THEN
        RAISE EXCEPTION 'refusing to undo migration 17: releases are recorded'
            USING HINT = 'the release history and its archive are never dropped; keep migration 17';
    END IF;
END
$$;

DROP FUNCTION release_probe_idempotency(), release_verify_current(), release_catalog(), release_drift(),
    release_restore(text), release_rollback(text, text, boolean, boolean, uuid), release_revert_precheck(text),
    _release_target(text), _release_drift_since(bigint), _release_expectations(bigint),
    release_deploy(text, text, text, text, text, text, timestamptz),
    _release_archive(bigint, text, text, text, text), _release_key(text, text[]), _release_added_columns(bigint, text), _release_machinery(text, text, text),
    _release_exec(text), _release_refuse(text, text, jsonb), _release_hash(text), _release_snapshot(), _release_catalog();
DROP VIEW active_releases;
DROP TABLE release_archive.restores, release_archive.archived_values, release_archive.archive_sets;
DROP TABLE release_reverts, release_objects, releases;

RESET ROLE;
DROP SCHEMA release_archive;
