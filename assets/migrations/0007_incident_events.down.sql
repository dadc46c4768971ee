-- Only the copy goes: the journals themselves are files.
SET LOCAL ROLE incident_owner;
DROP FUNCTION incident_events_max_seq(text);
DROP FUNCTION record_incident_events(text, jsonb);
DROP TABLE incident_events;
RESET ROLE;
