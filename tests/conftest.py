"""Suite-wide test markers.

``browser`` tests (everything under ``tests/browser/``) drive headless Chromium against a
running app; they are also ``slow``. Modules listed in :data:`SLOW_MODULES` start the app
or the replay server in subprocesses, replay tapes in real time or fuzz at length: the whole
module is ``slow``. ``python -m pytest -m "not slow"`` is the fast inner loop; CI runs all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Modules (relative to tests/) whose every test is slow.
SLOW_MODULES = frozenset({
    "test_app.py",
    "test_hostile_api.py",
    "ingest/test_faults.py",
    "ingest/feeds/test_backfill.py",
    "ingest/feeds/test_fuzz.py",
    "ingest/process/test_memory.py",
    "dashapp/test_heavy_fork.py",
})


#: Single tests (module::name, parameters ignored) that take more than a few seconds.
SLOW_TESTS = frozenset({
    "ingest/feeds/test_client.py::test_faults_drop_skip_garbage_and_40s_silence",
    "ingest/test_exactness.py::test_far_future_frame_is_rejected_and_counted",
    "ingest/test_exactness.py::test_unrecoverable_ids_mark_a_break_at_the_first_trade_after_them",
    # ~1 s or more each on a busy 2-core machine (real sockets, replays of the tape,
    # subprocess writers): together they made the fast subset ~2.5 min; measured with
    # python -m pytest -m "not slow" --durations=0 (docs/testing.md)
    "ingest/replay/test_server.py::test_futures_market_paths",
    "ingest/replay/test_server.py::test_combined_stream_delivers_every_trade_once_in_order",
    "ingest/replay/test_server.py::test_subscribe_list_unsubscribe",
    "ingest/replay/test_server.py::test_server_shutdown_then_close",
    "ingest/replay/test_server.py::test_abrupt_disconnect_does_not_hurt_others",
    "ingest/replay/test_server.py::test_silence_sends_and_answers_nothing",
    "ingest/replay/test_server.py::test_late_client_joins_the_shared_clock",
    "ingest/replay/test_server.py::test_client_not_answering_pings_is_dropped",
    "ingest/replay/test_server.py::test_cli_starts_prints_url_and_serves",
    "ingest/replay/test_server.py::test_garbage_frames_then_trades_continue",
    "ingest/replay/test_server.py::test_loop_shifts_ids_and_times_monotonic",
    "ingest/replay/test_rest.py::test_bad_parameters_answer_binance_errors",
    "ingest/replay/test_rest.py::test_rest_rows_equal_the_socket_events",
    "ingest/test_exactness.py::test_bad_id_frame_is_quarantined_and_every_genuine_trade_delivered",
    "ingest/test_exactness.py::test_replay_rest_port_falls_back_to_a_free_port_when_port_plus_one_is_taken",
    "ingest/test_exactness.py::test_stall_with_data_pending_never_closes_a_bar_quiet_connection_does",
    "ingest/test_exactness.py::test_clean_closes_of_short_connections_do_not_climb_the_backoff",
    "ingest/test_alert_service.py::test_other_metrics_on_the_tape",
    "ingest/test_alert_replay.py::test_replay_fires_exactly_the_offline_crossings",
    "ingest/test_alert_replay.py::test_restart_mid_tape_neither_refires_nor_misses",
    "ingest/test_alert_replay.py::test_rule_created_mid_tape_evaluates_every_bar_after_its_creation",
    "ingest/test_alert_replay.py::test_rule_created_before_the_tape_fires_every_crossing_however_late_evaluated",
    "ingest/feeds/test_client.py::test_restart_resumes_ids_and_refills_rings",
    "ingest/feeds/test_client.py::test_full_tape_stored_exactly_once",
    "ingest/feeds/test_runtime_feeds.py::test_market_futures_runs_the_perp_protocol_under_market",
    "ingest/feeds/test_runtime_feeds.py::test_spot_replay_keeps_the_bare_host",
    "ingest/store/test_sqlite_trades.py::test_readonly_store_reads_while_another_process_writes",
    "ingest/store/test_sqlite_trades.py::test_sigkill_after_flush_keeps_exactly_the_flushed_rows",
    "ingest/store/test_sqlite_trades.py::test_writer_survives_a_locked_database",
    "ingest/store/test_sqlite_trades.py::test_sigkill_mid_write_leaves_whole_batches",
    # exhaustive oracle sweeps; a quicker sibling of each stays in the fast subset
    "analytics/test_bars.py::test_builder_equals_batch_in_order",
    "analytics/test_bars.py::test_builder_out_of_order_equals_batch_without_late_ticks",
    "analytics/test_hedge.py::test_huber_reaches_the_minimum_of_its_objective_on_every_window",
    "analytics/test_hedge.py::test_theilsen_is_the_textbook_median_of_pairwise_slopes_on_every_window",
    "analytics/test_hedge.py::test_theilsen_of_long_windows_is_the_same_textbook_estimator",
    "analytics/test_align.py::test_pair_aligner_equals_align_pair_random",
    "analytics/test_engine.py::test_tracked_pair_equals_batch",
    "ingest/feeds/test_binance.py::test_fuzzed_trade_events_are_trades_or_badframes",
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(TESTS).as_posix()
        if rel.startswith("browser/"):
            item.add_marker(pytest.mark.browser)
        name = f"{rel}::{item.originalname or item.name}"
        if (rel.startswith("browser/") or rel in SLOW_MODULES or name in SLOW_TESTS
                or item.get_closest_marker("browser")):
            item.add_marker(pytest.mark.slow)
