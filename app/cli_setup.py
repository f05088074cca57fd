"""``loraloom setup-worker``, ``loraloom doctor`` and ``--version``: installing and checking, headless.

Kept out of cli.py so that the job commands stay in one place and these in another.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from app import __version__
from app.cli_common import fail


class VersionAction(argparse.Action):
    """Like argparse's version action, but the text (git, worker versions) is made only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):  # noqa: A002
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from app.core.versions import version_text

        print(version_text(__version__))
        parser.exit()


def add_parsers(parser: argparse.ArgumentParser, sub) -> None:
    parser.add_argument(
        "--version",
        action=VersionAction,
        help="show the version, the git commit and the worker's torch/diffusers, then exit",
    )
    setup = sub.add_parser("setup-worker", help="create the worker's Python environment (torch for this GPU)")
    setup.add_argument(
        "--torch-index",
        default=None,
        metavar="URL",
        help="install torch from this index (default: chosen from the GPU found)",
    )
    setup.add_argument(
        "--find-links",
        action="append",
        default=[],
        metavar="DIR",
        help="also look for wheels in this folder (repeatable)",
    )
    setup.add_argument(
        "--offline",
        action="store_true",
        help="install from --find-links folders only, no index (and no Python download)",
    )
    setup.add_argument(
        "--python",
        default=None,
        metavar="PATH",
        help="base Python for the new environment (default: uv finds or downloads 3.11)",
    )
    setup.add_argument(
        "--env",
        type=Path,
        default=None,
        metavar="DIR",
        help="where to create it (default: worker-env in the data folder)",
    )
    setup.add_argument(
        "--use",
        type=Path,
        default=None,
        metavar="PYTHON",
        help="instead of creating one, use this existing interpreter (it must have torch)",
    )
    doctor = sub.add_parser("doctor", help="check the installation and say how to fix what is wrong")
    doctor.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="FILE.zip",
        help="also write a debug report (tokens and home paths removed)",
    )


COMMANDS = ("setup-worker", "doctor")
# The sub-commands that import torch: the frozen app has none, so they run in the worker environment.
WORKER_COMMANDS = ("tiny-model", "skeleton", "generate", "bake", "convert", "caption", "train")


def run_in_worker(command: str, argv: list[str]) -> int:
    """The frozen app's ``loraloom generate …``: the same command line, on the worker's interpreter."""
    import os
    import subprocess

    from app.core import worker_env as w

    python = w.worker_python()
    if python is None:
        return fail(
            f"`loraloom {command}` runs in the worker environment and there is none yet: "
            "run `loraloom setup-worker` first"
        )
    env = {**os.environ, **w.launch_env(python)}
    try:
        return subprocess.run([str(python), "-m", "app.cli", *argv], env=env, check=False).returncode
    except OSError as exc:
        return fail(f"{python}: the worker's Python could not be started ({exc.strerror or exc})")


def run(args: argparse.Namespace) -> int:
    return cmd_setup_worker(args) if args.command == "setup-worker" else cmd_doctor(args)


def cmd_setup_worker(args: argparse.Namespace) -> int:
    from app.core import worker_env as w

    if args.use is not None:
        try:
            hello = w.probe_worker(args.use)
        except w.SetupError as exc:
            return fail(str(exc))
        w.save_python(args.use)
        print(f"worker uses {args.use}: device {hello.get('device')}, torch {hello.get('torch')}")
        return 0
    uv = w.find_uv()
    if uv is None:
        return fail("the uv binary was not found: install it with `pip install uv`")
    env_dir = (args.env or w.default_env_dir()).expanduser().absolute()
    if env_dir.exists() and any(env_dir.iterdir()):
        return fail(f"{env_dir} already exists: remove it first, or pass --env with a new folder")
    hardware = w.detect_hardware()
    defaults = w.setup_defaults()
    find_links = [str(Path(d).absolute()) for d in args.find_links] or defaults["find_links"]
    offline = args.offline or defaults["offline"]
    try:
        plan = w.plan_setup(
            env_dir,
            uv=uv,
            hardware=hardware,
            torch_index=args.torch_index,
            find_links=find_links,
            offline=offline,
            base_python=args.python or defaults["base_python"],
        )
    except (FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    print(f"hardware: {hardware.describe()}")
    print(f"torch from: {plan.torch_index or 'the default index (PyPI)'}" + (" (offline)" if offline else ""))
    try:
        w.run_plan(plan, print)
        hello = w.probe_worker(plan.python)
    except w.SetupError as exc:
        w.discard_env(env_dir)
        return fail(str(exc))
    w.save_python(plan.python)
    print(
        f"worker environment ready at {env_dir}: device {hello.get('device')}, torch {hello.get('torch')}, "
        f"diffusers {hello.get('diffusers')}"
    )
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from app.core import debug_report, doctor

    checks = doctor.run_checks()
    for check in checks:
        print(check.render())
    if args.report is not None:
        try:
            written = debug_report.write_report(args.report, debug_report.report_text(checks, __version__))
        except OSError as exc:
            return fail(f"{args.report}: could not write the report ({exc.strerror or exc})")
        print(f"debug report written to {written} (tokens and home paths removed)")
    return 1 if any(c.status is doctor.Status.FAIL for c in checks) else 0
