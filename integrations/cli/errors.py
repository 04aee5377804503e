"""One error style for every ``hff`` command: ``hff <command>: error: <what>`` and a hint, exit code 2, no
traceback (``--debug`` or ``HFF_DEBUG=1`` shows it), once per process group; Ctrl-C prints one line saying what
was kept and how to resume.

User errors are the exceptions bad input raises (``ValueError``, ``KeyError``, ``OSError`` such as a missing
file or a Hub repository that does not exist, ``ImportError`` for a missing optional package); anything else is a
bug and keeps its traceback, with a line asking for a report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable


class UsageError(ValueError):
    """Bad input, with an optional hint on what to do (printed on its own line)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what was kept and how to resume (the message of the one line printed)."""


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError, ImportError)
DEBUG_FLAG = "--debug"


def debug_requested(argv: list[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get("HFF_DEBUG", "").lower() not in ("", "0", "false")


def _is_main_rank() -> bool:
    """Under accelerate/torchrun only rank 0 prints the error (every rank raises the same one)."""
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) in ("0", "")


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    text = str(err).strip() or type(err).__name__
    return text


def _hint(err: BaseException) -> str | None:
    hint = getattr(err, "hint", None)
    if hint:
        return hint
    name = type(err).__name__
    if name in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"):
        return "check the id on huggingface.co; a private or gated repo needs HF_TOKEN"
    hub = name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled")
    if hub or (isinstance(err, ConnectionError) and "Hub" in str(err)):
        return "pass a local folder, or an id already in the local Hub cache (HF_HUB_OFFLINE=1 reads only the cache)"
    return None


def report_error(command: str, err: BaseException) -> None:
    """Print the one-line error (and hint) for ``err`` on stderr, once per process group."""
    if not _is_main_rank():
        return
    print(f"hff {command}: error: {_message(err)}", file=sys.stderr)
    hint = _hint(err)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)
    sys.stderr.flush()


def run_command(command: str, main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run a command's ``main(argv)`` with the shared error handling; returns the exit code."""
    debug = debug_requested(argv)
    if debug:
        os.environ["HFF_DEBUG"] = "1"  # processes the command launches (accelerate ranks) show tracebacks too
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt as err:
        if debug:
            raise
        if _is_main_rank():
            kept = str(err) if isinstance(err, Interrupted) and str(err) else "nothing is lost that was saved"
            print(f"\nhff {command}: interrupted; {kept}", file=sys.stderr)
        return 130
    except subprocess.CalledProcessError as err:  # a launched rank failed: it has printed its own error
        if debug:
            raise
        return err.returncode if err.returncode and err.returncode > 0 else 1
    except USER_ERRORS as err:
        if debug:
            raise
        report_error(command, err)
        return 2
    except SystemExit:
        raise
    except Exception:
        if _is_main_rank():
            print(
                f"hff {command}: an unexpected error (a bug in hf_fundamentals or a library; please report it "
                "with the traceback that follows)",
                file=sys.stderr,
            )
        raise
