"""SQL views users want on day one (recreated by every session that attaches the warehouse)."""

VIEWS = {
    # Where a file is and why: ops.file_state has one row per URI; the quarantined ones are this view.
    "ops.quarantine": """
        SELECT uri, audio_id, stage, error_code, reason, failed_expectations, recipe_hash, annotated_at,
               run_id, first_seen, last_seen
        FROM ops.file_state
        WHERE status = 'quarantined'
    """,
    # Every candidate clip of a judged file is in gold.clips or here, with the expectations it failed.
    "ops.clip_quarantine": """
        SELECT clip_id, audio_id, uri, start_s, end_s, duration_s, failed_expectations, recipe_hash,
               clip_params_hash, run_id, decided_at
        FROM ops.clip_state
        WHERE status = 'quarantined'
    """,
    "gold.dataset_summary": """
        SELECT language, quality_band,
               count(*) AS files,
               round(sum(duration_s) / 3600, 4) AS hours,
               round(sum(speech_s) / 3600, 4) AS speech_hours,
               round(avg(dnsmos_ovrl), 3) AS mean_dnsmos,
               round(percentile_approx(snr_db, 0.5), 2) AS median_snr_db,
               round(avg(wer), 4) AS mean_wer_vs_reference
        FROM gold.utterances
        GROUP BY language, quality_band
    """,
    "ops.quarantine_summary": """
        SELECT stage, error_code,
               coalesce(array_join(failed_expectations, ', '), '') AS failed_expectations,
               count(*) AS files,
               max(last_seen) AS last_seen
        FROM ops.quarantine
        GROUP BY stage, error_code, coalesce(array_join(failed_expectations, ', '), '')
    """,
}
