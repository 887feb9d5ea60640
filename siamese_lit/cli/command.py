"""Every command's entry point: a Hydra main behind one failure policy.

The policy (siamese_lit.utils.errors): a user error — a SiameseLitError, Hydra's override or
composition errors (an unparsable override, an unknown key, a value of the wrong type for the
command's schema), an OmegaConf error — ends the command with one `error:` line on stderr and exit
2; Ctrl-C with one line and exit 130. Ctrl-C is caught from the moment the wrapper runs: a command
module keeps its top light and imports its libraries in its task, so the wrapper is in place before
them. Positional paths (`compare a.png b.png`) become one override of the command's key
(siamese_lit.cli.paths). Output is printed with undecodable characters escaped, so a file name
that is not UTF-8 never stops a command with a UnicodeEncodeError.

Each command's settings have one typed schema (siamese_lit.cli.schemas): Hydra refuses an unknown
key or a value of the wrong type itself, before the task starts.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from siamese_lit.cli import ctrl_c
from siamese_lit.cli.paths import positional_paths
from siamese_lit.utils.errors import exit_on_user_error

#: conf/ at the repository root: every command's configs and config groups
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def run_command(
    task: Callable[[Any], Any],
    config_name: str,
    *,
    positional: str | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Run `task(cfg)` as a Hydra main of `config_name` under the failure policy, with the command
    line `argv` (default sys.argv[1:]); the positional paths become the override `<positional>=[...]`."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = list(sys.argv[1:] if argv is None else argv)
    saved_argv, saved_full_error = sys.argv[:], os.environ.get("HYDRA_FULL_ERROR")
    # Hydra prints its own errors over several lines and exits 1; with this it raises them instead
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with exit_on_user_error():
            if positional is not None:
                args = positional_paths(args, positional)
            import hydra

            @functools.wraps(task)  # Hydra names the job after the task's module (its log file)
            def hydra_task(cfg: Any) -> Any:
                with exit_on_user_error():  # here too: Hydra would print its own line for an error
                    return task(cfg)

            sys.argv[1:] = args
            main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
            main(hydra_task)()
    finally:
        ctrl_c.ignore_once_done()
        sys.argv[:] = saved_argv
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
