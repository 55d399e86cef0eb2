"""Command line: ``python -m clinflair_utils COMMAND ...`` (``--help`` lists the commands)."""

from __future__ import annotations

import argparse
import sys

from .errors import ClinflairError
from .profiles import BOOK_PROFILE, PROFILES
from .records import CORPORA_SUMMARY_FILE, TAGGER_FILE

PROFILE_CHOICES = f"{', '.join(PROFILES)}, or a profile YAML file"


def _validate(args: argparse.Namespace) -> int:
    from .conll import ReaderRules, parse_conll
    from .errors import ConllFormatError

    rules = ReaderRules()
    if args.dataset:
        from .data import reader_rules

        rules = reader_rules(args.dataset)
    failed = 0
    for path in args.files:
        try:
            sentences, report = parse_conll(path, rules)
        except ConllFormatError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        tokens = sum(len(sentence.tokens) for sentence in sentences)
        print(f"ok: {path}: {len(sentences)} sentences, {tokens} tokens; {report}")
    return 1 if failed else 0


def _stats(args: argparse.Namespace) -> int:
    from .data import corpus_stats, load_corpus

    corpus = load_corpus(args.dataset)
    print(corpus_stats(corpus).to_string())
    return 0


def _tag(args: argparse.Namespace) -> int:
    from .ner import tag_text

    entities = tag_text(args.model, " ".join(args.text))
    if not entities:
        print("no entities found")
    for entity in entities:
        print(f"{entity['start']}\t{entity['end']}\t{entity['type']}\t{entity['text']}\t{entity['confidence']:.3f}")
    return 0


def _corpora(args: argparse.Namespace) -> int:
    from .corpus import build_corpora, corpora_table, residual_table, sources_table
    from .profiles import load_profile

    settings = load_profile(args.profile)["pretraining"]["corpora"]
    build = build_corpora(args.out, **settings)
    print(sources_table(build).to_string(), end="\n\n")
    print(corpora_table(build).to_string(), end="\n\n")
    print("share (%) of each test split's 13-token windows found in each corpus (must be 0):")
    print(residual_table(build).to_string())
    print(f"\nwritten to {args.out} in {build.seconds:.0f} s ({CORPORA_SUMMARY_FILE} holds these tables)")
    return 0


def _book(args: argparse.Namespace) -> int:
    from .book import book_plan, build_html, job_status, run_pipeline
    from .jobs import ExecutorSettings
    from .profiles import load_profile

    if args.status:
        rows = job_status(args.profile, args.root, args.out)
        width = max(len(row["job"]) for row in rows)
        for row in rows:
            told = "; ".join(part for part in (row["progress"], row["log"]) if part)
            print(f"{row['job']:<{width}}  {row['state']:<13}  {told}".rstrip())
        counts = {state: sum(row["state"] == state for row in rows) for state in dict.fromkeys(r["state"] for r in rows)}
        print(", ".join(f"{n} {state}" for state, n in counts.items()))
        print(f"the NER runs: {book_plan(args.profile, args.root, args.out).expected_grid_time()}")
        return 0
    executor = ExecutorSettings.from_options(
        load_profile(args.profile), kind=args.executor, max_jobs=args.max_jobs, partition=args.partition,
        time_min=args.time_min, mem_gb=args.mem_gb, cpus_per_job=args.cpus_per_job, gpus_per_job=args.gpus_per_job,
        account=args.account, setup=args.setup or None)
    report = run_pipeline(args.profile, args.root, force=args.force, out=args.out, from_records=args.from_records,
                          executor=executor, stop_after=args.stop_after)
    print(f"executed {len(report.executed)}, skipped (already done) {len(report.skipped)}, "
          f"failed {len(report.failed)}")
    for name, problem in report.failed.items():
        print(f"  FAILED {name}: {problem}", file=sys.stderr)
    if not args.no_build:
        html = build_html(args.out or args.root)
        print(f"book built: {html / 'index.html'}")
    return 1 if report.failed else 0


def _report(args: argparse.Namespace) -> int:
    from .report import DOCUMENTS, write_documents

    stale = write_documents(args.root, check=args.check, profile=args.profile)
    if args.check:
        for name in stale:
            print(f"error: {name}: its generated blocks differ from the records; run "
                  "python -m clinflair_utils report", file=sys.stderr)
        return 1 if stale else 0
    print(f"rewrote {', '.join(stale)}" if stale else f"{', '.join(DOCUMENTS)} already agree with the records")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clinflair_utils", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check CoNLL files; exit 1 if any is malformed")
    validate.add_argument("files", nargs="+", help="CoNLL files (token, then BIO label per line)")
    validate.add_argument(
        "--dataset", help="apply the reader rules a registered dataset declares (e.g. cwlc: nested)"
    )
    validate.set_defaults(handler=_validate)

    stats = commands.add_parser("stats", help="sentences, tokens, entities per type per split")
    stats.add_argument("dataset", help="registered dataset name or folder of train/dev/test.conll")
    stats.set_defaults(handler=_stats)

    tag = commands.add_parser("tag", help="print the entities a trained tagger finds in raw text")
    tag.add_argument("model", help=f"a trained tagger ({TAGGER_FILE} in a run's output_dir)")
    tag.add_argument("text", nargs="+", help="Spanish text; tokenized the way the corpora are")
    tag.set_defaults(handler=_tag)

    corpora = commands.add_parser("corpora", help="build a profile's decontaminated pre-training corpora")
    corpora.add_argument("--profile", default="quick", help=f"{PROFILE_CHOICES} (default: quick)")
    corpora.add_argument("--out", required=True, help=f"folder for the TextCorpus folders and {CORPORA_SUMMARY_FILE}")
    corpora.set_defaults(handler=_corpora)

    book = commands.add_parser("book", help="execute the whole pipeline with papermill and build the book")
    book.add_argument("--profile", default="quick", help=f"{PROFILE_CHOICES} (default: quick)")
    book.add_argument("--root", default=".", help="the repository root (default: the current folder)")
    book.add_argument("--out", help="write the book, records and models under this folder instead of the "
                                    "root (e.g. a quick smoke run that leaves the committed book alone)")
    book.add_argument("--force", action="store_true", help="execute again what is already done")
    book.add_argument("--no-build", action="store_true", help="execute the notebooks only")
    book.add_argument("--from-records", action="store_true",
                      help="train nothing: execute the results chapter from the records the book holds and build")
    book.add_argument("--stop-after", choices=("pretraining", "curves"),
                      help="stop once this stage is done and published: the language models, or also the "
                           "learning curves that choose the NER grid's epochs")
    book.add_argument("--status", action="store_true",
                      help="only show each job: done, queued, running, failed (with its log) or not submitted")
    jobs = book.add_argument_group("where the jobs run (default: the profile's executor section, else local)")
    jobs.add_argument("--executor", choices=("local", "processes", "slurm"),
                      help="local: one after another in this process; processes: submitit subprocesses side by "
                           "side; slurm: one sbatch job per language model and NER run")
    jobs.add_argument("--max-jobs", type=int, help="at most this many jobs at once (default 4)")
    jobs.add_argument("--partition", help="SLURM partition (slurm: required)")
    jobs.add_argument("--time-min", type=int, help="each job's time limit in minutes (slurm: required)")
    jobs.add_argument("--mem-gb", type=float, help="each job's memory in GB (slurm: required)")
    jobs.add_argument("--cpus-per-job", type=int, help="CPU cores per job (also its torch threads)")
    jobs.add_argument("--gpus-per-job", type=int, help="GPUs per job (default: 1 for a cuda profile, else 0)")
    jobs.add_argument("--account", help="SLURM account to charge")
    jobs.add_argument("--setup", action="append",
                      help="a shell line run before each job, e.g. 'source .venv/bin/activate' (repeatable)")
    book.set_defaults(handler=_book)

    report = commands.add_parser("report", help="write the README's and introduction's measured text from the records")
    report.add_argument("--profile", default=BOOK_PROFILE,
                        help=f"whose records (default: {BOOK_PROFILE}, the published book)")
    report.add_argument("--root", default=".", help="the repository root (default: the current folder)")
    report.add_argument("--check", action="store_true", help="only compare; exit 1 if any block differs")
    report.set_defaults(handler=_report)

    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ClinflairError as error:  # the user gets one sentence, not a traceback
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
