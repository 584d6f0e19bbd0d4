"""Bad input at the command line: one line on stderr and exit code 2, never a traceback.

Library code raises ``ValueError`` (config, data, checkpoint and evaluation errors all
subclass it) or an ``OSError`` (missing file, unwritable folder) with a message that
names the problem; commands
raise :class:`UsageError` for their own checks. :func:`cli_errors` turns all three into
``<prog>: error: <message>`` and exit status 2, like argparse does for bad flags.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable

EXIT_USAGE = 2

MainFn = Callable[[list[str] | None], int]


class UsageError(Exception):
    """A command-line argument or combination of arguments is invalid."""


def report_usage_error(prog: str, error: BaseException, verbose: bool = False) -> int:
    """Print ``prog: error: message`` (the traceback too when ``verbose``); returns 2."""
    if verbose:
        traceback.print_exception(error, file=sys.stderr)
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def cli_errors(prog: str) -> Callable[[MainFn], MainFn]:
    """Decorator for ``main(argv) -> int``: bad input becomes one stderr line + exit 2.

    ``--verbose`` in argv adds the traceback (for bug reports).
    """

    def decorate(main: MainFn) -> MainFn:
        @functools.wraps(main)
        def wrapper(argv: list[str] | None = None) -> int:
            args = sys.argv[1:] if argv is None else argv
            try:
                return main(argv)
            except (UsageError, ValueError, OSError) as error:  # OSError: paths, permissions
                return report_usage_error(prog, error, verbose="--verbose" in args)

        return wrapper

    return decorate
