"""``taskplaner`` command line: serve, set-password, token, reindex, optimize, check, gc, backup,
restore, export-markdown, import-markdown."""

from __future__ import annotations

import argparse
import getpass
import secrets
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import backup, logs, markdown_folder
from .config import ConfigError, Settings, from_env
from .db import integrity_problems, merge_search_index, rebuild_search_index, release_free_pages
from .errors import AppError
from .services import Services, open_services


def _serve(services: Services, args: argparse.Namespace) -> int:
    from .web.server import create_server  # the CLI's other commands need no web layer

    settings = services.settings
    if not services.auth.has_password():
        password = settings.password
        generated = password is None
        if generated:
            password = secrets.token_urlsafe(12)
        services.auth.set_password(password)  # type: ignore[arg-type]
        if generated:
            # Shown once, on the console only; never written to the JSON log.
            print(f"\n  TaskPlaner password (shown once): {password}\n"
                  "  Change it with: taskplaner set-password\n", file=sys.stderr, flush=True)
    # waitress keeps request bodies beyond 64 KiB in temp files until the app runs, and so does
    # Bottle's multipart parser: put them on the data volume, not /tmp (a tmpfs in the compose
    # file, a 1 GiB emptyDir in the chart), where an import of up to TASKPLANER_MAX_IMPORT_BYTES
    # would not fit.
    tempfile.tempdir = str(settings.tmp_dir)
    server = create_server(services, settings.host, settings.port)
    logs.log(20, "listening", url=f"http://{settings.host}:{server.effective_port}/",
             data_dir=str(settings.data_dir))
    if settings.upkeep_hours:
        services.upkeep(settings.upkeep_hours * 3600).start()
    _stop_on_sigterm()
    try:
        server.run()  # returns on SystemExit, after closing the listening socket
    finally:
        server.task_dispatcher.shutdown()  # lets the requests in progress finish (up to 5 s)
    return 0


def _stop_on_sigterm() -> None:
    """Containers stop the app with SIGTERM. As a container's PID 1 a process that does not
    handle it never receives it: the engine waits out its grace period (podman 10 s,
    Kubernetes 30 s) and kills the server, in the middle of whatever it was doing. waitress's
    loop stops on SystemExit (its handlers re-raise it, where they log other exceptions)."""

    def stop(signum: int, frame: object) -> None:
        logs.log(20, "stopping", reason="SIGTERM")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


def _set_password(services: Services, args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    services.auth.set_password(password)
    print("password set; all sessions were logged out", file=sys.stderr)
    return 0


def _token(services: Services, args: argparse.Namespace) -> int:
    token = services.auth.create_token(args.name)
    print(token["token"])
    return 0


def _reindex(services: Services, args: argparse.Namespace) -> int:
    with services.db.write() as conn:
        rebuild_search_index(conn)
    merge_search_index(services.db)
    print("search index rebuilt", file=sys.stderr)
    return 0


def _optimize(services: Services, args: argparse.Namespace) -> int:
    steps = merge_search_index(services.db)
    print(f"search index merged in {steps} steps", file=sys.stderr)
    released = release_free_pages(services.db)
    if released:
        print(f"{released / 2**20:.1f} MiB of free pages given back to the disk", file=sys.stderr)
    return 0


def _check(services: Services, args: argparse.Namespace) -> int:
    problems = integrity_problems(services.db.conn)
    broken = services.attachments.missing_blobs()
    for problem in problems + [f"blob missing or damaged: {d}" for d in broken]:
        print(problem)
    if broken:
        rows = services.attachments.using(broken)
        for row in rows:
            print(f"  used by attachment {row['id']} '{row['filename']}' of item {row['item_id']}")
        if args.repair:
            for row in rows:
                services.attachments.delete(row["id"])
            print(f"repaired: deleted {len(rows)} attachments whose file was missing or damaged",
                  file=sys.stderr)
        else:
            problems += broken
            print(f"to repair: put the files back under {services.settings.data_dir}/blobs/ from a"
                  " backup, or run `taskplaner check --repair` to delete those attachments",
                  file=sys.stderr)
    print("ok" if not problems else f"{len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


def _gc(services: Services, args: argparse.Namespace) -> int:
    result = services.attachments.gc(args.grace)
    print(f"removed {result['blobs_removed']} unreferenced blobs and "
          f"{result['temp_files_removed']} temp files")
    return 0


Command = Callable[[Services, argparse.Namespace], int]


def _writer(write: Callable[[Services, Path], None]) -> Command:
    """A command that writes an export (``write(services, path)``) to its PATH."""

    def command(services: Services, args: argparse.Namespace) -> int:
        write(services, Path(args.path))
        print(f"wrote {args.path}", file=sys.stderr)
        return 0

    return command


def _restore(services: Services, args: argparse.Namespace) -> int:
    counts = backup.read_import_file(services, Path(args.path))
    print(f"restored {counts['items']} items and {counts['attachments']} attachments",
          file=sys.stderr)
    return 0


def _import_markdown(services: Services, args: argparse.Namespace) -> int:
    report = markdown_folder.import_path(services, Path(args.path))
    for entry in report["skipped"]:
        print(f"skipped {entry['file']}: {entry['reason']}", file=sys.stderr)
    counts = report["counts"]
    print(f"imported {counts['imported']} notes, skipped {counts['skipped']}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskplaner",
        description="Self-hosted notes and tasks. Settings come from TASKPLANER_* variables.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the web server (the default)").set_defaults(func=_serve)
    sub.add_parser("set-password", help="set the password (read from stdin)").set_defaults(
        func=_set_password)
    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("name")
    create.set_defaults(func=_token)
    sub.add_parser("reindex", help="rebuild the search index").set_defaults(func=_reindex)
    sub.add_parser(
        "optimize", help="merge the search index's b-trees now (the server does it daily), and"
        " give free pages back to the disk when they are a quarter of the file"
    ).set_defaults(func=_optimize)
    check = sub.add_parser("check", help="SQLite, FTS and blob integrity checks")
    check.add_argument("--repair", action="store_true",
                       help="delete the attachments whose file is missing or damaged")
    check.set_defaults(func=_check)
    gc = sub.add_parser("gc", help="remove unreferenced blobs and stale temp files")
    gc.add_argument("--grace", type=int, default=600,
                    help="only remove files older than this many seconds (default 600)")
    gc.set_defaults(func=_gc)
    for name, func, text in (
        ("backup", _writer(backup.write_export), "write an export archive to PATH"),
        ("restore", _restore, "replace all data with the archive at PATH"),
        ("export-markdown", _writer(markdown_folder.write_export),
         "write every item as Markdown files into the zip PATH"),
        ("import-markdown", _import_markdown,
         "add the Markdown files of the folder or zip PATH (Obsidian, flatnotes, an export)"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("path")
        cmd.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func = getattr(args, "func", _serve)
    logs.setup()
    try:
        settings: Settings = from_env()
    except ConfigError as exc:
        print(f"taskplaner: configuration error: {exc}", file=sys.stderr)
        return 2
    services = open_services(settings)
    try:
        return int(func(services, args))
    except AppError as exc:
        print(f"taskplaner: {exc.message}", file=sys.stderr)
        return 1
    finally:
        services.close()


if __name__ == "__main__":
    sys.exit(main())
