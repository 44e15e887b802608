"""`@record`: a frozen dataclass without the import-time cost of `dataclasses`.

`@dataclass(frozen=True)` writes `__init__`, `__repr__`, `__eq__`, `__hash__`, `__setattr__` and
`__delattr__` as source text and compiles them for every class when its module is imported (about
1 ms a class here), and `import dataclasses` imports `inspect` (12 ms of a 1.2 s `podmagic run`).
`record` reads the class's annotations itself and gives it methods every record shares: defining
one costs what defining a plain class does, and nothing imports `dataclasses` until something asks
for it. The class keeps the dataclass constructor (positional or keyword, defaults,
`default_factory`, `__post_init__`), equality, hash, repr, `__match_args__` and immutability
(`dataclasses.FrozenInstanceError`), and it still is a dataclass to `dataclasses.fields`,
`replace`, `asdict` and `is_dataclass` (their `Field`s are made on first use). `mutable` is the same
without the freezing and the hash (`@dataclass`). `field`, `replace` and `asdict` are this module's
spellings of the dataclasses ones, for modules that would otherwise import `dataclasses` for them.
Imports only the standard library.
"""

from __future__ import annotations

import operator
import sys

TYPE_CHECKING = False  # `typing` is for type checkers alone: importing it costs each CLI start 5 ms
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T", bound=type)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class Field:
    """One field of a record, as `field(...)` declares it (`dataclasses.field`'s options)."""

    __slots__ = ("name", "type", "default", "default_factory", "init", "repr", "hash", "compare", "metadata")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING, init: bool = True,
                 repr: bool = True, hash: bool | None = None, compare: bool = True, metadata: Any = None):
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name: str = ""
        self.type: Any = None
        self.default, self.default_factory, self.init, self.repr = default, default_factory, init, repr
        self.hash, self.compare, self.metadata = hash, compare, metadata


def field(*, default: Any = MISSING, default_factory: Any = MISSING, init: bool = True, repr: bool = True,
          hash: bool | None = None, compare: bool = True, metadata: Any = None) -> Any:
    """`dataclasses.field` for records."""
    return Field(default, default_factory, init, repr, hash, compare, metadata)


def record(cls: T) -> T:
    """Use as `@record` where `@dataclass(frozen=True)` would be."""
    return _make(cls, frozen=True)


def mutable(cls: T) -> T:
    """Use as `@mutable` where `@dataclass` would be: fields may be assigned; unhashable, as there."""
    return _make(cls, frozen=False)


def _make(cls: T, frozen: bool) -> T:
    fields = _collect(cls)
    cls.__record_fields__ = fields
    cls.__record_init__ = tuple((f.name, f.default, f.default_factory) for f in fields if f.init)
    cls.__record_names__ = tuple(f.name for f in fields if f.init)
    cls.__record_set__ = tuple((f.name, f.default, f.default_factory) for f in fields if not f.init)
    compared = tuple(f.name for f in fields if f.compare)
    # attrgetter is C: equality and hashing cost little more than a compiled dataclass's
    cls.__record_key__ = operator.attrgetter(*compared) if len(compared) > 1 else _single(compared)
    cls.__record_repr__ = tuple(f.name for f in fields if f.repr)
    cls.__record_post__ = getattr(cls, "__post_init__", None)
    cls.__match_args__ = cls.__record_names__
    cls.__dataclass_fields__ = _DataclassFields()
    if not cls.__dict__.get("__doc__"):
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in fields)})"
    methods = _FROZEN if frozen else _MUTABLE
    for name, method in methods.items():
        setattr(cls, name, method)
    return cls


def _collect(cls: type) -> tuple[Field, ...]:
    """The fields, bases' first, as dataclasses orders them; the class attributes become the defaults."""
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get("__record_fields__", ()):
            found[f.name] = f
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else _foreign(value) or Field(default=value)
        f.name, f.type = name, annotation
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: use default_factory")
        if f.default is MISSING:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, f.default)
        found[name] = f
    _check_order(cls, found.values())
    return tuple(found.values())


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    typing = sys.modules.get("typing")
    if typing is None:
        return False
    return annotation is typing.ClassVar or getattr(annotation, "__origin__", None) is typing.ClassVar


def _foreign(value: Any) -> Field | None:
    """A `dataclasses.field(...)` in a record's body (a module that imports dataclasses anyway)."""
    dc = sys.modules.get("dataclasses")
    if dc is None or not isinstance(value, dc.Field):
        return None
    own = lambda v: MISSING if v is dc.MISSING else v  # noqa: E731
    return Field(own(value.default), own(value.default_factory), value.init, value.repr, value.hash,
                 value.compare, value.metadata or None)


def _check_order(cls: type, fields) -> None:
    seen_default = False
    for f in fields:
        if not f.init:
            continue
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument in {cls.__name__}")


class _DataclassFields:
    """`__dataclass_fields__`, made on first use: `dataclasses.fields`, `replace`, `asdict` and
    `is_dataclass` see a record as the dataclass it would have been."""

    def __get__(self, obj: Any, cls: type) -> dict:
        import dataclasses

        table = {}
        for f in cls.__record_fields__:
            real = dataclasses.field(default=_theirs(f.default, dataclasses), init=f.init, repr=f.repr,
                                     default_factory=_theirs(f.default_factory, dataclasses), hash=f.hash,
                                     compare=f.compare, metadata=f.metadata)
            real.name, real.type = f.name, f.type
            real._field_type = dataclasses._FIELD  # what `dataclasses.fields` keeps (private, the same 3.7–3.13)
            table[f.name] = real
        type.__setattr__(cls, "__dataclass_fields__", table)
        return table


def _theirs(value: Any, dataclasses: Any) -> Any:
    return dataclasses.MISSING if value is MISSING else value


def replace(obj: Any, /, **changes: Any) -> Any:
    """`dataclasses.replace`, without importing dataclasses for a record."""
    cls = type(obj)
    if not hasattr(cls, "__record_fields__"):
        import dataclasses

        return dataclasses.replace(obj, **changes)
    for f in cls.__record_fields__:
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is declared with init=False, it cannot be specified with replace()")
        elif f.name not in changes:
            changes[f.name] = obj.__dict__[f.name]
    return cls(**changes)


_PLAIN = (str, int, float, bool, type(None), bytes)


def asdict(obj: Any) -> dict[str, Any]:
    """`dataclasses.asdict`, without importing dataclasses for records of plain values."""
    if not hasattr(type(obj), "__record_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    return _asdict(obj)


def _asdict(obj: Any) -> Any:
    cls = type(obj)
    if cls in _PLAIN:
        return obj
    if hasattr(cls, "__record_fields__"):
        return {f.name: _asdict(getattr(obj, f.name)) for f in cls.__record_fields__}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return cls(*[_asdict(v) for v in obj])
    if isinstance(obj, (list, tuple)):
        return cls(_asdict(v) for v in obj)
    if isinstance(obj, dict):
        return cls((_asdict(k), _asdict(v)) for k, v in obj.items())
    if hasattr(cls, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    import copy

    return copy.deepcopy(obj)


def _single(names: tuple[str, ...]):
    get = operator.attrgetter(names[0]) if names else None
    return (lambda obj: (get(obj),)) if get else (lambda obj: ())


def _init(self, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    if not kwargs and not cls.__record_set__ and len(args) == len(cls.__record_names__):
        self.__dict__.update(zip(cls.__record_names__, args))  # every field given, in order: the common case
    else:
        _init_fields(self, cls, args, kwargs)
    if cls.__record_post__ is not None:
        cls.__record_post__(self)


def _init_fields(self, cls: type, args: tuple, kwargs: dict) -> None:
    spec = cls.__record_init__
    if len(args) > len(spec):
        raise TypeError(f"{cls.__name__}() takes {len(spec)} positional arguments but {len(args)} were given")
    for i, (name, default, factory) in enumerate(spec):
        if i < len(args):
            if name in kwargs:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            value = args[i]
        elif name in kwargs:
            value = kwargs.pop(name)
        elif default is not MISSING:
            value = default
        elif factory is not MISSING:
            value = factory()
        else:
            raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
        object.__setattr__(self, name, value)
    if kwargs:  # what is left names no field the constructor takes
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {next(iter(kwargs))!r}")
    for name, default, factory in cls.__record_set__:
        if default is not MISSING or factory is not MISSING:
            object.__setattr__(self, name, default if default is not MISSING else factory())


def _repr(self) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).__record_repr__)
    return f"{type(self).__qualname__}({inner})"


def _eq(self, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    key = type(self).__record_key__
    return key(self) == key(other)


def _hash(self) -> int:
    return hash(type(self).__record_key__(self))


def _setattr(self, name: str, value: Any) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self, name: str) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot delete field {name!r}")


_FROZEN = {"__init__": _init, "__repr__": _repr, "__eq__": _eq, "__hash__": _hash,
           "__setattr__": _setattr, "__delattr__": _delattr}
_MUTABLE = {"__init__": _init, "__repr__": _repr, "__eq__": _eq, "__hash__": None}
