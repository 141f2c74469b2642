------------------------------------------------------------------------------------------------------
-- Backups: pg_dump keeps every row of the state (codecs, frozen functions and their history, migrations
-- and their history, jobs with their checkpoints, the door's read samples). A job restored into another
-- database comes back paused (see job_home()).
------------------------------------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('migration_ext.codec', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.frozen_function', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.function_version', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.migration', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.planned_swap', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.planned_swap_ordinal_seq', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.migration_event', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.migration_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.backfill_job', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.backfill_job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.read_sample', '');
SELECT pg_catalog.pg_extension_config_dump('migration_ext.read_repair', '');

-- DROP EXTENSION without CASCADE is refused while migrations are in flight (drop_guard.cpp).
CREATE FUNCTION migration_ext.guard_drop_extension() RETURNS event_trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'mext_guard_drop_extension';
CREATE EVENT TRIGGER migration_ext_drop_guard ON ddl_command_start WHEN TAG IN ('DROP EXTENSION')
	EXECUTE FUNCTION migration_ext.guard_drop_extension();
REVOKE EXECUTE ON FUNCTION migration_ext.guard_drop_extension() FROM PUBLIC;
