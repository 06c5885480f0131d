"""A parser of pickle files that executes nothing: this is NOT unpickling.

Some benchmark metadata ships only as pickles (RobustMVD's sample lists hold instances of ``rmvd`` classes
and numpy arrays). ``pickle.load`` would import modules and call whatever the file names, so instead
:func:`parse_pickle` walks the opcode stream with :func:`pickletools.genops` and builds inert values:

- ``None`` / bool / int / float / str / bytes / tuple / list / dict / set as themselves;
- a global (``GLOBAL`` / ``STACK_GLOBAL``) becomes a :class:`PickledGlobal` ``(module, name)`` record, and a
  call of it (``REDUCE`` / ``NEWOBJ``) plus its ``BUILD`` state a :class:`PickledObject`
  ``(module, name, args, state)`` record. Nothing is imported, looked up or called;
- ``_codecs.encode(text, "latin1")`` (protocol 2's spelling of bytes) is rebuilt as those bytes;
- numpy arrays and scalars are decoded from their known reconstruct forms only (``numpy[._]core.multiarray
  ._reconstruct(numpy.ndarray, (0,), b'b')`` + state ``(version, shape, dtype, is_fortran, raw bytes)``;
  ``...multiarray.scalar(dtype, raw bytes)``) with :func:`numpy.frombuffer`, for plain numeric / bool
  dtypes. Any other form (object dtype, structured dtype, protocol-5 buffers) stays an inert record.

Any opcode not handled here (persistent ids, extension codes, out-of-band buffers, protocol-0 ``INST`` /
``OBJ``, ...) ends the parse with one :class:`~tune3d.errors.Tune3DError` line naming the file.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tune3d.errors import Tune3DError

_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
# plain numeric / bool dtype codes np.frombuffer can decode without running anything
_SAFE_DTYPES = {
    f"{k}{n}"
    for k, ns in (("b", (1,)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)), ("f", (2, 4, 8)))
    for n in ns
} | {"c8", "c16", "?"}


@dataclass(frozen=True)
class PickledGlobal:
    """A global the pickle names (``module.name``); never imported."""

    module: str
    name: str


@dataclass(eq=False)
class PickledObject:
    """An inert record of ``module.name(*args)`` followed by ``BUILD(state)`` (``state`` None if none)."""

    module: str
    name: str
    args: tuple = ()
    state: Any = None
    kwargs: dict = field(default_factory=dict)


class _Mark:
    pass


_MARK = _Mark()


def parse_pickle(path: str | Path) -> Any:
    """The value stored in the pickle file ``path``, as inert Python values (see the module docstring)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Tune3DError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_pickle_bytes(data, str(path))


def parse_pickle_bytes(data: bytes, name: str = "<bytes>") -> Any:
    """:func:`parse_pickle` of in-memory bytes; ``name`` labels errors."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}

    def fail(msg: str) -> Tune3DError:
        return Tune3DError(f"{name}: {msg}")

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1 :]
                del stack[i:]
                return items
        raise fail("malformed pickle (no MARK on the stack)")

    try:
        for op, arg, pos in pickletools.genops(data):
            n = op.name
            if n in ("PROTO", "FRAME"):
                continue
            if n == "STOP":
                if len(stack) != 1:
                    raise fail("malformed pickle (stack not single at STOP)")
                try:
                    return _finish(stack.pop(), {})
                except RecursionError:
                    raise fail("pickle nested too deeply; not read") from None
            if n == "MARK":
                stack.append(_MARK)
            elif n in ("NONE", "NEWTRUE", "NEWFALSE"):
                stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[n])
            elif n in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"):
                stack.append(arg)
            elif n in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                stack.append(str(arg))
            elif n in ("SHORT_BINBYTES", "BINBYTES", "BINBYTES8"):
                stack.append(bytes(arg))
            elif n == "EMPTY_LIST":
                stack.append([])
            elif n == "EMPTY_DICT":
                stack.append({})
            elif n == "EMPTY_TUPLE":
                stack.append(())
            elif n == "EMPTY_SET":
                stack.append(set())
            elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(n[-1])
                if len(stack) < k:
                    raise fail(f"malformed pickle ({n} on a short stack)")
                items = tuple(stack[-k:])
                del stack[-k:]
                stack.append(items)
            elif n == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif n == "LIST":
                stack.append(pop_mark())
            elif n == "DICT":
                items = pop_mark()
                stack.append(_pairs_to_dict(items, fail))
            elif n == "FROZENSET":
                stack.append(frozenset(_hashable(x, fail) for x in pop_mark()))
            elif n == "APPEND":
                v = stack.pop()
                _as(stack[-1], list, n, fail).append(v)
            elif n == "APPENDS":
                items = pop_mark()
                _as(stack[-1], list, n, fail).extend(items)
            elif n == "SETITEM":
                v, k = stack.pop(), stack.pop()
                _as(stack[-1], dict, n, fail)[_hashable(k, fail)] = v
            elif n == "SETITEMS":
                items = pop_mark()
                _as(stack[-1], dict, n, fail).update(_pairs_to_dict(items, fail))
            elif n == "ADDITEMS":
                items = pop_mark()
                _as(stack[-1], set, n, fail).update(_hashable(x, fail) for x in items)
            elif n in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif n == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif n in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise fail(f"malformed pickle (memo {arg} read before written)")
                stack.append(memo[arg])
            elif n == "POP":
                stack.pop()
            elif n == "POP_MARK":
                pop_mark()
            elif n == "DUP":
                stack.append(stack[-1])
            elif n == "GLOBAL":
                module, _, gname = str(arg).partition(" ")
                stack.append(PickledGlobal(module, gname))
            elif n == "STACK_GLOBAL":
                gname, module = stack.pop(), stack.pop()
                if not isinstance(module, str) or not isinstance(gname, str):
                    raise fail("malformed pickle (STACK_GLOBAL of non-strings)")
                stack.append(PickledGlobal(module, gname))
            elif n in ("REDUCE", "NEWOBJ"):
                args, g = stack.pop(), stack.pop()
                if not isinstance(g, PickledGlobal) or not isinstance(args, tuple):
                    raise fail(f"malformed pickle ({n} of a non-global or without an argument tuple)")
                stack.append(PickledObject(g.module, g.name, args))
            elif n == "NEWOBJ_EX":
                kwargs, args, g = stack.pop(), stack.pop(), stack.pop()
                if (
                    not isinstance(g, PickledGlobal)
                    or not isinstance(args, tuple)
                    or not isinstance(kwargs, dict)
                ):
                    raise fail("malformed pickle (NEWOBJ_EX)")
                stack.append(PickledObject(g.module, g.name, args, kwargs=kwargs))
            elif n == "BUILD":
                state = stack.pop()
                obj = _as(stack[-1], PickledObject, n, fail)
                if isinstance(obj.state, dict) and isinstance(state, dict):
                    obj.state.update(state)
                else:
                    obj.state = state
            else:
                raise fail(f"unsupported pickle opcode {n} at byte {pos}; not read")
    except Tune3DError:
        raise
    except (ValueError, IndexError) as e:  # truncated / corrupt stream, or popping an empty stack
        raise fail(f"malformed pickle ({e})") from None
    raise fail("malformed pickle (no STOP)")


def _as(obj: Any, kind: type, op: str, fail) -> Any:
    if not isinstance(obj, kind):
        raise fail(f"malformed pickle ({op} on a {type(obj).__name__}, expected {kind.__name__})")
    return obj


def _hashable(k: Any, fail) -> Any:
    try:
        hash(k)
    except TypeError:
        raise fail(f"malformed pickle (unhashable key of type {type(k).__name__})") from None
    return k


def _pairs_to_dict(items: list[Any], fail) -> dict:
    if len(items) % 2:
        raise fail("malformed pickle (odd number of dict items)")
    return {_hashable(items[i], fail): items[i + 1] for i in range(0, len(items), 2)}


def _dtype(rec: Any) -> np.dtype | None:
    """``numpy.dtype(code, False, True)`` + state ``(3, byteorder, None, None, None, -1, -1, flags)`` ->
    a plain numeric dtype; None for anything else (structured, subarray, object, ...)."""
    if not (
        isinstance(rec, PickledObject)
        and (rec.module, rec.name) == ("numpy", "dtype")
        and len(rec.args) >= 1
        and isinstance(rec.args[0], str)
        and rec.args[0] in _SAFE_DTYPES
    ):
        return None
    order = "|"
    st = rec.state
    if st is not None:
        if not (isinstance(st, tuple) and len(st) >= 5 and st[2] is None and st[3] is None and st[4] is None):
            return None
        order = st[1] if st[1] in ("<", ">", "|", "=") else None
        if order is None:
            return None
    dt = np.dtype(rec.args[0])
    return dt.newbyteorder(order) if order in ("<", ">") else dt


def _array(rec: PickledObject) -> np.ndarray | None:
    """The ndarray of a ``_reconstruct`` record in numpy's own pickle form, else None."""
    a, st = rec.args, rec.state
    if not (
        len(a) == 3
        and a[0] == PickledGlobal("numpy", "ndarray")
        and a[1] == (0,)
        and a[2] in (b"b", "b")
        and isinstance(st, tuple)
        and len(st) == 5
        and isinstance(st[1], tuple)
        and all(isinstance(s, int) and s >= 0 for s in st[1])
        and isinstance(st[3], bool)
        and isinstance(st[4], bytes)
    ):
        return None
    dt = _dtype(st[2])
    if dt is None:
        return None
    shape = st[1]
    count = int(np.prod(shape, dtype=np.int64))
    if count * dt.itemsize != len(st[4]):
        return None
    arr = np.frombuffer(st[4], dtype=dt, count=count).reshape(shape, order="F" if st[3] else "C")
    return arr.copy()  # writable, owning its memory


def _scalar(rec: PickledObject) -> Any:
    a = rec.args
    if len(a) != 2 or not isinstance(a[1], bytes):
        return None
    dt = _dtype(a[0])
    if dt is None or dt.itemsize != len(a[1]):
        return None
    return np.frombuffer(a[1], dtype=dt, count=1)[0]


def _is_latin1_bytes(v: PickledObject) -> bool:
    """``_codecs.encode(text, "latin1")``: how protocol 2 writes bytes; rebuilt here, not called."""
    a = v.args
    if not (len(a) == 2 and isinstance(a[0], str) and a[1] in ("latin1", "latin-1") and v.state is None):
        return False
    return all(ord(c) < 256 for c in a[0])


def _finish(v: Any, seen: dict[int, Any]) -> Any:
    """Replace numpy reconstruct records by arrays / scalars, recursively (shared values stay shared)."""
    if isinstance(v, (list, dict, tuple, set, frozenset, PickledObject)):
        if id(v) in seen:
            return seen[id(v)]
    else:
        return v
    if isinstance(v, list):
        out: Any = []
        seen[id(v)] = out
        out.extend(_finish(x, seen) for x in v)
        return out
    if isinstance(v, dict):
        out = {}
        seen[id(v)] = out
        out.update((k, _finish(x, seen)) for k, x in v.items())
        return out
    if isinstance(v, (set, frozenset)):
        seen[id(v)] = v  # members are hashable scalars / records: nothing numpy inside to decode
        return v
    if isinstance(v, tuple):
        out = tuple(_finish(x, seen) for x in v)
        seen[id(v)] = out
        return out
    if (v.module, v.name) == ("_codecs", "encode") and _is_latin1_bytes(v):  # protocol-2 bytes
        seen[id(v)] = v.args[0].encode("latin1")
        return seen[id(v)]
    out = PickledObject(v.module, v.name, kwargs=v.kwargs)
    seen[id(v)] = out
    out.args = _finish(v.args, seen)
    out.state = _finish(v.state, seen)
    if v.module in _NUMPY_CORE and v.name in ("_reconstruct", "scalar"):  # decoded from finished parts
        decoded = _array(out) if v.name == "_reconstruct" else _scalar(out)
        if decoded is not None:
            seen[id(v)] = decoded
            return decoded
    return out
