"""``python -m bench``: run the sections, print the goals, write the README table and JSON."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.core import Context, Result
from bench.inputs import InputSet
from bench.sections import SECTIONS

log = logging.getLogger("bench")
REPO = Path(__file__).resolve().parents[1]


def parse(argv: list[str]) -> argparse.Namespace:
    names = [section.NAME for section in SECTIONS]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sections", default=",".join(names),
                        help=f"comma-separated, from: {', '.join(names)}")
    parser.add_argument("--runs", type=int, default=5, help="repeats of each measurement")
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the files and one run: checks that it works")
    parser.add_argument("--inputs", type=Path, default=None,
                        help="where the generated inputs live (reused when complete); "
                             "default: a folder under the system's temp directory")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    parser.add_argument("--migrate-files", type=int, default=None,
                        help="files per backend in the migrate section (default 1,000; "
                             "the issue's figure is 10,000)")
    parser.add_argument("--upload-mb", type=int, default=None,
                        help="size of the file the upload section sends (default 500)")
    parser.add_argument("--reconcile-rows", type=int, default=None,
                        help="rows (and objects) the reconcile section compares "
                             "(default 1,000,000)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("botocore", "boto3", "urllib3", "alembic", "celery", "kombu", "pipeline"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    wanted = [name.strip() for name in args.sections.split(",") if name.strip()]
    sections = [section for section in SECTIONS if section.NAME in wanted]
    scale = 0.1 if args.quick else 1.0
    inputs_root = args.inputs or Path(tempfile.gettempdir()) / f"sluice-bench-inputs-{scale:g}"

    started = time.monotonic()
    log.info("making inputs in %s", inputs_root)
    inputs = InputSet.ensure(inputs_root, scale=scale)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as work:
        ctx = Context(work=Path(work), inputs=inputs, runs=1 if args.quick else args.runs,
                      quick=args.quick, results=results,
                      options={"migrate_files": args.migrate_files,
                               "upload_mb": args.upload_mb,
                               "reconcile_rows": args.reconcile_rows})
        with ctx.cleanup:
            for section in sections:
                section_start = time.monotonic()
                log.info("section %s", section.NAME)
                results += section.run(ctx)
                log.info("section %s took %.0f s", section.NAME,
                         time.monotonic() - section_start)

    meta = {**report.meta(), "seconds": round(time.monotonic() - started),
            "runs": ctx.runs, "quick": args.quick}
    titles = {section.NAME: section.TITLE for section in sections}
    table = report.markdown(results, titles, meta)
    print(table)
    print("\n".join(report.goal_lines(results)))
    if args.quick:
        # A smoke check on a tenth of the files: nothing worth keeping.
        print(f"\nquick run took {meta['seconds']} s; no JSON, README untouched")
        return 0
    path = report.write_json(REPO / "bench" / "results", results, meta)
    print(f"\nJSON: {path.relative_to(REPO)}; took {meta['seconds']} s")
    if not args.no_readme:
        report.write_readme(REPO / "README.md", table)
        print("README.md: table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
