"""The summary a run prints on stdout: files and hours in, curated, quarantined by reason, the Delta
versions written and where the Data Docs are."""
from __future__ import annotations

from jobs.warehouse.ledger import RunRecord


def print_summary(results: dict, record: RunRecord) -> None:
    lines = [f"run {record.run_id}: {record.status}"]
    ingest = results.get("ingest")
    if ingest:
        lines += [
            f"  listed            {ingest.listed} files",
            f"  new or changed    {ingest.new_or_changed}"
            + (f" (the listing bronze@{ingest.unchanged_since} was brought in line with)"
               if ingest.unchanged_since is not None else ""),
            f"  probed ok         {ingest.probed_ok} ({ingest.audio_seconds / 3600:.3f} h of audio)",
            f"  quarantined       {ingest.quarantined}"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(ingest.errors_by_code.items())) + ")"
               if ingest.errors_by_code else ""),
        ]
        if ingest.deleted:
            lines.append(f"  deleted           {ingest.deleted} (no longer listed by their source)")
    annotate = results.get("annotate")
    if annotate:
        lines.append(f"  annotated         {annotate.annotated} files ({annotate.audio_seconds / 3600:.3f} h)"
                     + (f" in {annotate.chunks} commits" if annotate.chunks > 1 else "")
                     + (f"; stopped at the cap with {annotate.candidates - annotate.annotated} left"
                        if annotate.stopped_by_cap else ""))
        for name, m in annotate.by_annotator.items():
            lines.append(f"    {name:<11} ok {int(m['ok']):>5}  failed {int(m['failed']):>4}  "
                         f"skipped {int(m['skipped']):>4}  {m['seconds']:8.1f} s")
        if annotate.errors_by_code:
            lines.append("    failures: " + ", ".join(f"{k}: {v}" for k, v in sorted(annotate.errors_by_code.items())))
    link = results.get("link")
    if link and link.skipped:
        lines.append(f"  linked            skipped: {link.skipped}")
    elif link:
        lines.append(f"  linked            {link.files} files: {link.speaker_clusters} speaker clusters of 2+, "
                     f"{link.duplicate_groups} duplicate groups ({link.duplicates} copies not kept)")
    publish = results.get("publish")
    if publish:
        if publish.blocked:
            lines.append("  PUBLISH BLOCKED   critical checks failed, gold unchanged: "
                         + ", ".join(f"{c['name']} (observed {c['observed']})" for c in publish.failed_checks))
        else:
            lines.append(f"  judged            {publish.candidates} files: {publish.published} curated, "
                         f"{publish.quarantined} quarantined")
        if publish.rejected_by:
            lines.append("    rejected by: " + ", ".join(f"{k}: {v}" for k, v in sorted(publish.rejected_by.items())))
        if publish.docs_path:
            lines.append(f"  data docs         {publish.docs_path}")
    reconciled = results.get("reconcile")
    if reconciled and reconciled.gold_removed:
        lines.append(f"  removed from gold {reconciled.gold_removed} (audio no listed file holds any more, "
                     "or that no longer decodes)")
    invariant = results.get("invariant")
    if invariant:
        lines.append(f"  file outcomes     {invariant.line()}")
    if results.get("report"):
        lines.append(f"  dataset report    {results['report']}")
    maintain = results.get("maintain")
    if maintain:
        lines.append(f"  maintained        compacted {len(maintain.compacted)} tables, vacuumed "
                     f"{sum(maintain.vacuumed.values())} files")
    if record.delta_versions:
        lines.append("  delta versions    " + ", ".join(f"{k}@{v}" for k, v in record.delta_versions.items()
                                                      if v is not None))
    lines.append(f"  wall seconds      { {k: v for k, v in record.stage_seconds.items() if '.' not in k} }")
    print("\n".join(lines))
