-- The views run as the caller: row-level security shows each role the jobs of tables it may act on, and
-- the bodies of functions it owns.
GRANT SELECT ON @extschema@.backfill_status, @extschema@.migration_status, @extschema@.migration_history,
	@extschema@.function_history TO PUBLIC;

------------------------------------------------------------------------------------------------------
-- Who may call what: every function of schema migration_ext is the extension's own, except the entry
-- points below (as_invoker() calls into the implementations, which authorize their actor) and what the
-- views, row-level security policies, create_mirror(), wait_backfill() and await_backfill() evaluate as the caller.
------------------------------------------------------------------------------------------------------
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA migration_ext FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	migration_ext.start_backfill(regclass, name, text, name, int, int, boolean, text, boolean, interval, interval, int,
								 bigint, regclass, double precision, boolean, int),
	migration_ext.start_migration_backfill(text, name, int, int, boolean, interval, interval, int, bigint,
										   double precision, boolean, int),
	migration_ext.tables_size(regclass[]),
	migration_ext.swap_function(regprocedure, text, text, name, text),
	migration_ext.revert_function(regprocedure, int, text),
	migration_ext.advance_migration(text, text, text, int),
	migration_ext.retreat_migration(text, text),
	migration_ext.record_out_of_band(regprocedure, text),
	migration_ext.ddl_progress(text),
	migration_ext.replays(pg_stat_replication),
	migration_ext.is_legacy_by_definition(text, text, text, text, text),
	migration_ext.job_home(),
	migration_ext.may_act_on(regrole, regclass),
	migration_ext.may_read_function(regprocedure),
	migration_ext.require_job(regrole, bigint),
	migration_ext.effective_state(migration_ext.backfill_job),
	migration_ext.worker_alive(int),
	migration_ext.xid_is_mine(xid),
	migration_ext.in_transaction_block(),
	migration_ext.is_phase(text),
	migration_ext.setting(text),
	migration_ext.stopped_state(bigint),
	migration_ext.progress_line(bigint),
	migration_ext.wants_progress(boolean),
	migration_ext.progress_every(),
	migration_ext.settle_state(text),
	migration_ext.require_migration(text, boolean),
	migration_ext.classify(text, text),
	migration_ext.checked_column(regclass, name),
	migration_ext.cast_converted(text, anyelement, text[]),
	migration_ext.require_codec(text),
	migration_ext.row_estimate(regclass),
	migration_ext.mirror_trigger(),
	migration_ext.move_mirror(),
	migration_ext.move_swept(text),
	migration_ext.mirror_name(name, name),
	migration_ext.unflushed_repairs(text),
	migration_ext.repaired_by_reads(text),
	migration_ext.estimated_rows(regclass),
	migration_ext.node_old_transactions(timestamptz),
	migration_ext.workers_waiting_for(text, text),
	migration_ext.citus_node_role()
TO PUBLIC;
