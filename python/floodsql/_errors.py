"""floodsql's exceptions: one base class, and a kind per cause that is also
the built-in exception a caller would catch for it.

=====================  ==========================  ==========================================
exception              also a                      raised for
=====================  ==========================  ==========================================
InvalidInputError      ValueError                  a bad bbox, datetime, URL, asset name, SQL,
                                                   option or parameter; a result that cannot
                                                   be a raster; no items found
DataError              OSError                     a catalogue, COG, file or cluster failed
                                                   while the query ran
RefusedError           DataError, PermissionError  a catalogue href outside the read policy
TimeoutError           DataError, TimeoutError     a server did not answer in time
InternalError          RuntimeError                floodsql's own bug
=====================  ==========================  ==========================================

A cancelled query (KeyboardInterrupt) raises KeyboardInterrupt itself.
The message is the CLI's, one line, credentials in URLs masked.
"""
import builtins

from . import _floodsql


class Error(Exception):
    """Any floodsql error; ``kind`` says which (input, data, refused,
    timeout, internal)."""

    kind = "error"


class InvalidInputError(Error, ValueError):
    kind = "input"


class DataError(Error, OSError):
    kind = "data"


class RefusedError(DataError, PermissionError):
    kind = "refused"


class TimeoutError(DataError, builtins.TimeoutError):
    kind = "timeout"


class InternalError(Error, RuntimeError):
    kind = "internal"


_BY_KIND = {c.kind: c for c in (InvalidInputError, DataError, RefusedError, TimeoutError, InternalError)}


def translate(e):
    """The package's exception for an extension's QueryError."""
    kind, message = e.args if len(e.args) == 2 else ("internal", str(e))
    if kind == "cancelled":
        return KeyboardInterrupt(message)
    return _BY_KIND.get(kind, InternalError)(message)


class _raising:
    """Context manager: QueryError → the package's exception (cause hidden)."""

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is not None and issubclass(et, _floodsql.QueryError):
            raise translate(ev) from None
        return False


raising = _raising()
