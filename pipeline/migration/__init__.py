"""Batch migration of legacy archives: folder trees, zip and tar files, into the queue.

Every file of the source becomes an ordinary document (``source="migration"``),
streamed into the spool one at a time and enqueued like any other. The modules:

    entries      what a source yields, and the codes of refused entries
    safety       entry names, links and expansion limits (compression bombs)
    legacy_names names written in old encodings (CP437, GBK, CP1252)
    streams      readers over chunks, decompression with a meter, peeking
    scratch      a nested zip held while it is looked into, in memory or the spool
    sources/     the folder walker, the zip reader (and its salvage), the tar reader
    walk         the walk over a source, archives inside archives included
    options      what the user asked for (category, tags, maps, globs)
    ledger       the run and each entry's outcome, so a run can resume
    throttle     the bound on documents in flight
    progress     the progress line or log lines
    report       the JSON and CSV report and the summary
    migrate      a real run: spool, enqueue, record, wait
    dry_run      what would come in, touching nothing
"""
