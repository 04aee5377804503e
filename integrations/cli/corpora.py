"""``hff corpora``: list the offline text domains, install their Debian packages, print sample documents."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable

from hf_fundamentals import corpora

CHEAP_TO_COUNT = frozenset({"computing", "jargon", "fortunes", "licenses"})
"""Domains whose full document count takes well under a second; the rest are counted with ``--counts``."""


def _apt_install(packages: list[str], echo: Callable[[str], None]) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    echo("running: " + " ".join(command))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def install_debian_packages(
    domains: Iterable[str] | None = None, dry_run: bool = False, echo: Callable[[str], None] = print
) -> list[str]:
    """Install the Debian packages whose domains are missing (all domains when None); idempotent.

    Runs ``apt-get install`` only for absent sources, and ``apt-get update`` once only if that fails with
    "Unable to locate package". Needs root; otherwise raises PermissionError with the command to run.
    Returns the packages installed (with ``dry_run``, the ones that would be; nothing is run).
    """
    names = list(corpora.DOMAINS) if domains is None else corpora.resolve_domains(domains)
    needed: dict[str, list[str]] = {}
    for name in names:
        domain = corpora.DOMAINS[name]
        if domain.package and not domain.available():
            needed.setdefault(domain.package, []).append(name)
    if not needed:
        echo(f"all corpus sources are present for: {', '.join(names)}; nothing to install")
        return []
    packages = list(needed)
    for package, for_domains in needed.items():
        echo(f"{package}: needed by domain(s) {', '.join(for_domains)} (source absent)")
    command = "apt-get install -y " + " ".join(packages)
    if dry_run:
        echo(f"dry run: would run `{command}` (and `apt-get update` first if apt cannot locate them)")
        return packages
    if shutil.which("apt-get") is None:
        raise RuntimeError(
            f"apt-get is not on this machine (not Debian/Ubuntu?); install by hand: {packages}"
        )
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise PermissionError(f"installing needs root; run: sudo {command}")
    result = _apt_install(packages, echo)
    if result.returncode != 0 and "Unable to locate" in (result.stdout + result.stderr):
        echo("apt cannot locate the packages; running: apt-get update")
        update = subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False)
        if update.returncode != 0:
            raise RuntimeError(f"`apt-get update` failed:\n{(update.stdout + update.stderr)[-2000:]}")
        result = _apt_install(packages, echo)
    if result.returncode != 0:
        raise RuntimeError(f"`{command}` failed:\n{(result.stdout + result.stderr)[-2000:]}")
    corpora.forget_listings()
    still_missing = [
        name for package in packages for name in needed[package] if not corpora.DOMAINS[name].available()
    ]
    if still_missing:
        echo(
            f"installed {packages}, but the sources of {still_missing} are still absent "
            "(a dpkg path-exclude such as Docker's minimal images drop /usr/share/man?)"
        )
    else:
        echo(f"installed: {', '.join(packages)}")
    return packages


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hff corpora",
        description=(
            "Offline text corpora: named domains of real text read from this machine (Debian packages and "
            "Python's standard library). Without options, lists the domains and whether they are present."
        ),
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--install",
        action="store_true",
        help="install the Debian packages of the missing domains (apt-get; needs root)",
    )
    action.add_argument("--sample", metavar="DOMAIN", help="print a few documents of DOMAIN")
    parser.add_argument(
        "--dry-run", action="store_true", help="with --install: say what would run, run nothing"
    )
    parser.add_argument(
        "--domains",
        metavar="NAMES",
        help="with --install: comma-separated domains (default: all); names: " + ", ".join(corpora.DOMAINS),
    )
    parser.add_argument("-n", type=int, default=3, help="with --sample: how many documents (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="with --sample: sampling seed (default: 0)")
    parser.add_argument("--min-chars", type=int, default=corpora.DEFAULT_MIN_CHARS, help="shortest document")
    parser.add_argument("--max-chars", type=int, default=corpora.DEFAULT_MAX_CHARS, help="longest document")
    parser.add_argument(
        "--counts",
        action="store_true",
        help="count documents of every domain when listing (reads every source: about a minute for manpages)",
    )
    return parser


def _list(counts: bool, min_chars: int, max_chars: int) -> int:
    available = corpora.available_domains()
    rows = [("domain", "present", "debian package", "documents", "source")]
    for name, domain in corpora.DOMAINS.items():
        count = "-"
        if available[name] and (counts or name in CHEAP_TO_COUNT):
            count = str(corpora.count_documents(name, min_chars, max_chars))
        rows.append(
            (name, "yes" if available[name] else "no", domain.package or "(python)", count, str(domain.root))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    pairs = ", ".join(f"{a} vs {b}" for a, b in corpora.CONFUSABLE_PAIRS)
    print(f"\nconfusable pair(s): {pairs}")
    if not counts:
        print("documents: '-' = not counted (pass --counts)")
    missing = corpora.missing_packages()
    if missing:
        print(f"missing: {', '.join(missing)}; install with `hff corpora --install` (root)")
    return 0


def _sample(domain: str, n: int, seed: int, min_chars: int, max_chars: int) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "only k documents": the header below says how many there are
        records = corpora.build_corpus([domain], n, seed=seed, min_chars=min_chars, max_chars=max_chars)
    for record in records:
        print(f"--- {record['domain']} | {record['source']} | {len(record['text'])} chars ---")
        print(record["text"])
        print()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``hff corpora``; returns the exit code (0 ok, 1 failure, 2 bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.install:
            domains = [d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else None
            install_debian_packages(domains, dry_run=args.dry_run)
            return 0
        if args.dry_run or args.domains:
            parser.error("--dry-run and --domains go with --install")
        if args.sample:
            if args.n < 1:
                parser.error(f"-n must be at least 1, got {args.n}")
            return _sample(args.sample, args.n, args.seed, args.min_chars, args.max_chars)
        return _list(args.counts, args.min_chars, args.max_chars)
    except RuntimeError as error:  # apt failures: one line, as for every other error (cli.errors)
        from hf_fundamentals.integrations.cli.errors import report_error

        report_error("corpora", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
