"""The `nodeagent` command: `main` parses the arguments and hands each command to its module.

`cli.parser` holds the arguments, `cli.commands` the one-shot commands, `cli.daemon` the long-running
`run`, `cli.views` what they print, `cli.ops` events/describe/logs. Exit codes (`cli.common`): 0 ok,
1 a check or an action failed, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import nodeagent
from nodeagent import errors, settings
from nodeagent.cli import commands, daemon, ops, parser, views
from nodeagent.cli.common import EXIT_FAILED as EXIT_FAILED
from nodeagent.cli.common import EXIT_OK as EXIT_OK
from nodeagent.cli.common import EXIT_USAGE as EXIT_USAGE
from nodeagent.fleet import report
from nodeagent.service import logs

# What tests and benchmarks reach through `nodeagent.cli`; each lives in its home module.
cmd_fleet_status = commands.cmd_fleet_status
cmd_validate = commands.cmd_validate
plan_json = views.plan_json
print_fleet = views.print_fleet
node_report = report.node_report
status_json = report.status_json
_reload = daemon.reload_config


def main(argv: Sequence[str] | None = None) -> int:
    args = parser.build().parse_args(argv)
    level = args.log_level or ("info" if args.command == "run" else "warning")
    logs.configure(level, args.log_format)
    if args.command is None:
        parser.build().print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return _dispatch(args)
    except errors.ConfigError as exc:
        print(f"nodeagent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "validate":
        return commands.cmd_validate(args.paths, args.output, sys.stdout, args.policy)
    if args.command == "sign":
        return commands.cmd_sign(args.file, args.key, args.output, args.trusted_comment)
    if args.command == "version":
        print(f"nodeagent {nodeagent.__version__}")
        return EXIT_OK
    if args.command == "serve":
        return commands.cmd_serve(args)
    if args.command in ops.COMMANDS:
        return ops.main(args)
    if args.command == "rollout":
        return int(args.rollout_main(args))
    if args.command == "status" and args.server:
        return commands.cmd_fleet_status(
            args.server,
            args.output,
            sys.stdout,
            args.token_file,
            args.ca_file,
            client_cert=args.client_cert,
            client_key=args.client_key,
        )
    if args.command == "node":
        return commands.cmd_node_delete(args)
    # the commands below act on this node: they read its config
    config_path = args.config or settings.default_config_path()
    cfg = settings.load(config_path)
    if args.command == "plan":
        return commands.cmd_plan(cfg, args.output, sys.stdout)
    if args.command == "sync":
        return commands.cmd_sync(cfg, args.dry_run, args.output, sys.stdout)
    if args.command == "status":
        return commands.cmd_status(cfg, args.output, sys.stdout)
    if args.command == "run":
        return daemon.cmd_run(cfg, config_path)
    if args.command == "orphan":
        return commands.cmd_orphan(cfg, args.daemonset, args.undo, sys.stdout)
    if args.command == "delete":
        return commands.cmd_delete_pod(cfg, args.pod, sys.stdout)
    return EXIT_USAGE
