"""`@record`: a frozen dataclass without the import-time cost of compiling its methods.

`@dataclass(frozen=True)` writes `__init__`, `__repr__`, `__eq__`, `__hash__`, `__setattr__` and
`__delattr__` as source text and compiles them for every class when its module is imported: about
1 ms a class here, a third of `import podmagic.run.api`. `record` makes the same class, a real
dataclass (`dataclasses.fields`, `replace`, `asdict` and `is_dataclass` work on it), with the same
constructor (positional or keyword, defaults, `default_factory`, `__post_init__`), equality, hash,
repr and immutability (`FrozenInstanceError`), from methods every record shares: defining one costs
what defining a plain class does. Imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import MISSING, FrozenInstanceError
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def record(cls: T) -> T:
    """Use as `@record` where `@dataclass(frozen=True)` would be."""
    doc = cls.__dict__.get("__doc__")
    cls.__doc__ = doc or cls.__name__  # dataclass would build one through inspect.signature
    cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False)  # fields only: nothing compiled
    fields = dataclasses.fields(cls)
    cls.__record_init__ = tuple((f.name, f.default, f.default_factory) for f in fields if f.init)
    cls.__record_names__ = tuple(f.name for f in fields if f.init)
    cls.__record_set__ = tuple((f.name, f.default, f.default_factory) for f in fields if not f.init)
    compared = tuple(f.name for f in fields if f.compare)
    # attrgetter is C: equality and hashing cost little more than a compiled dataclass's
    cls.__record_key__ = operator.attrgetter(*compared) if len(compared) > 1 else _single(compared)
    cls.__record_repr__ = tuple(f.name for f in fields if f.repr)
    cls.__record_post__ = getattr(cls, "__post_init__", None)
    if not doc:
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in fields)})"
    for name in ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
        setattr(cls, name, _METHODS[name])
    return cls


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
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


_METHODS = {"__init__": _init, "__repr__": _repr, "__eq__": _eq, "__hash__": _hash,
            "__setattr__": _setattr, "__delattr__": _delattr}
