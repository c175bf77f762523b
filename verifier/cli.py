"""Command line: argparse wiring over :mod:`verifier.api`. No logic lives here.

Exit codes (docs/contract.md): 0 pass, 1 verification failed, 2 usage error / malformed policy /
unreadable artifact, 3 inconclusive. Every failure prints one line; no tracebacks
(``-v`` adds the traceback of an internal error for a bug report).

Start-up: ``biv --version`` and ``--help`` import nothing but argparse and this package's
light modules. The library (``verifier.api`` and everything behind it) is imported by the
command that needs it, inside its ``_cmd_*`` function: that is the one lazy seam.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NoReturn

from verifier import __version__, lifecycle
from verifier.attest import cli as attest_cli
from verifier.errors import BivError, UsageError

if TYPE_CHECKING:
    from datetime import datetime

    from verifier.baseline import BaselineAnnotations
    from verifier.model import Report, Severity

FORMATS = ("text", "json", "sarif", "html")


def _severity(text: str) -> Severity:
    from verifier.model import Severity  # lazy: CLI seam (+18 modules), only for --fail-on

    try:
        return Severity(text.lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid severity {text!r} (choose from {', '.join(s.value for s in Severity)})"
        ) from None


def _time(text: str) -> datetime:
    from datetime import UTC, datetime  # lazy: CLI seam, only for --at

    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {text!r} (use ISO 8601)") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="biv",
        description="Build-integrity verifier: compare shipped artifacts "
        "with their upstream releases and verify their code signatures.",
    )
    p.add_argument("--version", action="version", version=f"biv {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    v = sub.add_parser("verify", help="verify an artifact against its upstream")
    v.add_argument("artifact", metavar="ARTIFACT", help="directory, archive or installer")
    v.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="SOURCE",
        help="upstream: path:DIR_OR_ARCHIVE, electron:VERSION|auto, pypi:NAME==VER, "
        "npm:NAME@VER, url:URL#sha256=HEX (repeatable)",
    )
    v.add_argument("--policy", metavar="FILE", help="policy file (default: electron-app)")
    v.add_argument("--format", choices=FORMATS, default="text")
    v.add_argument("-o", "--output", metavar="FILE", help="write the report here")
    v.add_argument(
        "--fail-on",
        type=_severity,
        metavar="SEVERITY",
        help="fail on findings at or above this severity (default: high)",
    )
    v.add_argument(
        "--trust-store",
        action="append",
        default=[],
        metavar="PEM",
        help="extra trusted root certificates (repeatable)",
    )
    v.add_argument("--at", type=_time, metavar="TIME", help="verify as of this time (ISO 8601)")
    v.add_argument("--offline", action="store_true", help="use only the cache")
    v.add_argument("--cache-dir", metavar="DIR")
    v.add_argument(
        "--no-analysis-cache",
        action="store_true",
        help="analyse every file afresh; neither read nor write the analysis cache",
    )
    v.add_argument("--mirror", metavar="URL", help="Electron release mirror")
    v.add_argument(
        "--main-exe", metavar="PATH", help="shipped path of the renamed Electron main executable"
    )
    v.add_argument("--app-root", metavar="PATH", help="application root inside the artifact")
    v.add_argument("--workdir", metavar="DIR", help="keep unpacked files here")
    v.add_argument("--refs", metavar="URL", help="TUF repository of reference inventories")
    v.add_argument("--refs-root", metavar="ROOT_JSON", help="trusted root.json for --refs")
    v.add_argument(
        "--baseline",
        metavar="PREVIOUS_JSON",
        help="an earlier biv JSON report: mark what is new since then",
    )
    v.add_argument(
        "--sarif-anchor",
        metavar="PATH",
        help="repository file SARIF results point at (default: the policy file)",
    )
    v.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    v.add_argument("-v", "--verbose", action="store_true")
    attest_cli.add_verify_options(v)

    i = sub.add_parser("inspect", help="format and signature facts of one file")
    i.add_argument("file", metavar="FILE")
    i.add_argument(
        "--against",
        metavar="UPSTREAM_FILE",
        help="show what changed from this upstream file, side by side (disassembly included)",
    )
    i.add_argument("--format", choices=("text", "json"), default="text")
    i.add_argument("--trust-store", action="append", default=[], metavar="PEM")
    i.add_argument("--at", type=_time, metavar="TIME")

    attest_cli.add_commands(sub)

    r = sub.add_parser("refs", help="reference inventories and their TUF repository")
    rsub = r.add_subparsers(dest="refs_command", metavar="ACTION", parser_class=_Parser)
    rb = rsub.add_parser("build", help="write the biv.refs/v1 inventory of an upstream SOURCE")
    rb.add_argument("source", metavar="SOURCE")
    rb.add_argument(
        "-o",
        "--output-dir",
        metavar="DIR",
        required=True,
        help="one biv.refs/v1 file per reference is written here",
    )
    rb.add_argument("--cache-dir", metavar="DIR")
    rb.add_argument("--offline", action="store_true")
    rk = rsub.add_parser("keygen", help="create an Ed25519 signing key (PEM) for publishing")
    rk.add_argument("path", metavar="KEY_PEM")
    rp = rsub.add_parser("publish", help="create or update a TUF repository of references")
    rp.add_argument("--repo", metavar="DIR", required=True)
    rp.add_argument("--key", metavar="PEM", required=True, help="signing key for every role")
    rp.add_argument(
        "--ref",
        action="append",
        default=[],
        metavar="FILE",
        help="a biv.refs/v1 inventory (from 'biv refs build'; repeatable)",
    )
    rp.add_argument("--known-bad", metavar="FILE", help="JSON list of known-bad digests")
    rp.add_argument("--revoked", metavar="FILE", help="JSON list of revoked certificates")

    d = sub.add_parser("demo", help="build the 3CX scenario locally and verify it")
    d.add_argument("--keep", metavar="DIR", help="build the scenario here and keep it")
    return p


# The collector's thresholds for the process (README "Scale"): biv makes a few objects per
# file, mostly acyclic and freed by reference counting, and keeps them until the report;
# at the default (700, 10, 10) the collector traversed every live object of a
# 200,000-member zip a dozen times (2 of 17 s). A young generation of 10,000 and a full
# collection at most every 100 middle ones: about 0.6 s. Cycles are still collected.
GC_THRESHOLDS = (10_000, 10, 100)


def run() -> NoReturn:
    """The command line (``biv``, ``python -m verifier``): ``main()``, then the process ends
    at once, without tearing the interpreter down.

    Freeing every object of a large run one by one at exit took 40-60 ms after a warm
    ``verify`` of the bench's combined tree (7,666 files), about a twentieth of the run, for
    memory the kernel reclaims anyway. By then biv's own work is over (work directories
    removed, workers reaped; ``lifecycle.cleanup`` is called in case) and its files are
    closed; only the standard streams are flushed here. If flushing fails (a closed pipe),
    Python exits as it always did, and reports that as it always did.
    """
    code = main()
    lifecycle.cleanup()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args_list or "--verbose" in args_list
    if argv is None:  # the real command line (not a test calling main in-process)
        lifecycle.install_signal_handlers()
        gc.set_threshold(*GC_THRESHOLDS)
    try:
        args = build_parser().parse_args(args_list)
        if args.command is None:
            build_parser().print_help()
            return 2
        return int(_dispatch(args))
    except BivError as exc:
        print(f"biv: error: {_safe(exc.diagnostics())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("biv: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, never a pass
        print(f"biv: internal error: {type(exc).__name__}: {_safe(exc)}", file=sys.stderr)
        if verbose:
            import traceback  # lazy: CLI seam, only for a bug report

            traceback.print_exc()
        return 2


def _safe(value: object) -> str:
    """An error line may quote a member name: escaped like every untrusted string."""
    from verifier.report.escape import text  # lazy: CLI seam (+6 modules), error lines only

    return text(value)


def _dispatch(args: argparse.Namespace) -> int:
    rc = attest_cli.dispatch(args)
    if rc is not None:
        return rc
    if args.command == "verify":
        return _cmd_verify(args)
    if args.command == "inspect":
        return _cmd_inspect(args)
    if args.command == "refs":
        return _cmd_refs(args)
    if args.command == "demo":
        from verifier.demo.run import run_demo  # lazy: CLI seam (the test kit)

        return run_demo(out_dir=args.keep)
    raise UsageError(f"unknown command {args.command}")


def _cmd_verify(args: argparse.Namespace) -> int:
    import dataclasses  # lazy: CLI seam

    from verifier import api  # lazy: CLI seam (the library)
    from verifier.progress import make_progress  # lazy: CLI seam

    lifecycle.sweep()  # work directories of biv processes that were killed (SIGKILL)

    attest_cli.check_verify_options(args)
    req = api.VerifyRequest(
        artifact=args.artifact,
        against=tuple(args.against),
        policy=args.policy,
        fail_on=args.fail_on,
        trust_stores=tuple(args.trust_store),
        at=args.at,
        offline=args.offline,
        cache_dir=args.cache_dir,
        mirror=args.mirror,
        main_exe=args.main_exe,
        app_root=args.app_root,
        workdir=args.workdir,
        refs_url=args.refs,
        refs_root=args.refs_root,
        layout=args.layout,
        layout_keys=tuple(args.layout_key or ()),
        links=args.links,
        analysis_cache=not args.no_analysis_cache,
    )
    previous = None
    if args.baseline:
        from verifier.baseline import load_baseline  # lazy: CLI seam

        previous = load_baseline(args.baseline)  # a bad file is exit 2 before any work
    progress = make_progress(args.quiet)
    try:
        report = api.verify(dataclasses.replace(req, progress=progress))
    finally:
        if progress is not None:
            progress.clear()
    ann = None
    if previous is not None:
        from verifier.baseline import apply_baseline  # lazy: CLI seam

        ann = apply_baseline(report, previous)
        ann = dataclasses.replace(ann, baseline_path=args.baseline)
    if args.format == "json" and ann is None:
        from verifier.report.json import iter_json  # lazy: CLI seam

        _emit(iter_json(report), args.output)  # written while made: no whole-report string
    else:
        text = render(
            report,
            args.format,
            color=args.output is None,
            verbose=args.verbose,
            baseline=ann,
            sarif_anchor=args.sarif_anchor,
        )
        _emit(text, args.output)
    if args.output and not args.quiet:
        print(
            f"biv: {report.verdict.value} ({args.format} report written to {args.output})",
            file=sys.stderr,
        )
    intoto_ok = bool(args.layout) and not any(f.rule == "in-toto-failure" for f in report.findings)
    inputs = attest_cli.layout_inputs(args) + _tuf_inputs(args)
    note = attest_cli.write_attestation(report, args, inputs, intoto_ok=intoto_ok)
    if note and not args.quiet:
        print(f"biv: {note}", file=sys.stderr)
    return api.exit_code(report)


def _tuf_inputs(args: argparse.Namespace) -> list[object]:
    """The TUF metadata a verification relied on, as VSA input attestations."""
    if not args.refs:
        return []
    import hashlib  # lazy: CLI seam

    from verifier.attest.vsa import InputAttestation  # lazy: CLI seam (cryptography)
    from verifier.upstream.tuf_client import metadata_dir  # lazy: CLI seam (python-tuf)

    base = args.refs if args.refs.endswith("/") else args.refs + "/"
    meta = metadata_dir(base, args.cache_dir)
    out: list[object] = []
    for role in ("root", "timestamp", "snapshot", "targets"):
        f = meta / f"{role}.json"
        if f.is_file():
            sha = hashlib.sha256(f.read_bytes()).hexdigest()
            out.append(InputAttestation(f"{base}metadata/{role}.json", sha, "tuf-metadata"))
    return out


def render(
    report: Report,
    fmt: str,
    color: bool = False,
    verbose: bool = False,
    baseline: BaselineAnnotations | None = None,
    sarif_anchor: str | None = None,
) -> str:
    if fmt == "json":
        if baseline is not None:
            from verifier.baseline import annotate_json  # lazy: CLI seam
            from verifier.report.json import dumps_report  # lazy: CLI seam

            return dumps_report(annotate_json(report.to_dict(), baseline))
        from verifier.report.json import render_json  # lazy: CLI seam

        return render_json(report)
    if fmt == "sarif":
        from verifier.report.sarif import render_sarif  # lazy: CLI seam

        return render_sarif(report, sarif_anchor, baseline=baseline)
    if fmt == "html":
        from verifier.report.html import render_html  # lazy: CLI seam

        return render_html(report, baseline=baseline)
    from verifier.report.text import color_wanted, render_text  # lazy: CLI seam

    return render_text(
        report, color=color and color_wanted(sys.stdout), verbose=verbose, baseline=baseline
    )


def _emit(text: str | Iterable[str], output: str | None) -> None:
    """Write a report (whole, or piece by piece as it is made): valid UTF-8 whatever bytes
    a name held, and no ``F.tmp-PID`` left behind on any error (nor on SIGINT/SIGTERM: the
    partial file is tracked)."""
    from verifier.report.escape import utf8  # lazy: CLI seam

    pieces = (text,) if isinstance(text, str) else text
    if output is None:
        for piece in pieces:
            sys.stdout.write(utf8(piece))
        return
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        with lifecycle.partial_file(tmp):
            with open(tmp, "w", encoding="utf-8") as fh:
                for piece in pieces:
                    fh.write(utf8(piece))
            os.replace(tmp, output)
    except OSError as exc:
        raise UsageError(f"cannot write report: {exc.strerror}", where=output) from exc


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json  # lazy: CLI seam

    from verifier import api  # lazy: CLI seam (the library)

    if args.against:
        pair = api.inspect_against(args.file, args.against, tuple(args.trust_store), args.at)
        if args.format == "json":
            from verifier.report.escape import json_safe  # lazy: CLI seam

            doc = json_safe(json.loads(json.dumps(pair, default=str)))
            sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        else:
            from verifier.report.escape import text as safe_line  # lazy: CLI seam
            from verifier.report.explain_text import render_against  # lazy: CLI seam

            lines = render_against(pair).split("\n")  # data only: every line escaped
            sys.stdout.write("\n".join(safe_line(line) for line in lines))
        return 0
    info = api.inspect(args.file, tuple(args.trust_store), args.at)
    if args.format == "json":
        from verifier.report.escape import json_safe  # lazy: CLI seam

        doc = json_safe(json.loads(json.dumps(info, default=str)))
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        from verifier.report.inspect_text import render_inspect  # lazy: CLI seam

        sys.stdout.write(render_inspect(info))
    return 0


def _cmd_refs(args: argparse.Namespace) -> int:
    import json  # lazy: CLI seam

    from verifier.upstream import tuf_publish  # lazy: CLI seam (python-tuf)

    if args.refs_command == "build":
        from verifier import api  # lazy: CLI seam (the library)

        docs = api.build_reference_documents(args.source, args.cache_dir, args.offline)
        os.makedirs(args.output_dir, exist_ok=True)
        for doc in docs:
            c = doc["component"]
            parts = [c["name"], c.get("version"), c.get("platform"), c.get("arch")]
            name = "-".join(str(p) for p in parts if p) + ".json"
            out = os.path.join(args.output_dir, name.replace("/", "_"))
            _emit(json.dumps(doc, indent=1, sort_keys=True) + "\n", out)
            print(f"biv: wrote {out}", file=sys.stderr)
        return 0
    if args.refs_command == "keygen":
        keyid = tuf_publish.generate_key(args.path)
        print(f"biv: wrote {args.path} (keyid {keyid})", file=sys.stderr)
        return 0
    if args.refs_command == "publish":
        refs = [tuf_publish.load_reference_file(p) for p in args.ref]
        known_bad = (
            tuf_publish.load_known_bad_file(args.known_bad)
            if args.known_bad
            else list(tuf_publish.THREECX_KNOWN_BAD)
        )
        revoked = tuf_publish.load_revoked_file(args.revoked) if args.revoked else []
        result = tuf_publish.publish(
            args.repo,
            tuf_publish.RoleKeys.single(args.key),
            refs,
            known_bad=known_bad,
            revoked=revoked,
        )
        print(
            f"biv: published {len(result.targets)} targets to {result.repo_dir}; "
            f"clients verify with --refs-root {result.root_path}",
            file=sys.stderr,
        )
        return 0
    raise UsageError("biv refs needs an action: build, keygen or publish")
