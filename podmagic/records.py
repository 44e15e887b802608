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
    cls.__record_set__ = tuple((f.name, f.default, f.default_factory) for f in fields if not f.init)
    cls.__record_compare__ = tuple(f.name for f in fields if f.compare)
    cls.__record_repr__ = tuple(f.name for f in fields if f.repr)
    if not doc:
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in fields)})"
    for name in ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
        setattr(cls, name, _METHODS[name])
    return cls


def _init(self, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
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
    post = getattr(self, "__post_init__", None)
    if post is not None:
        post()


def _repr(self) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).__record_repr__)
    return f"{type(self).__qualname__}({inner})"


def _values(self) -> tuple:
    return tuple(getattr(self, name) for name in type(self).__record_compare__)


def _eq(self, other: object) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self) -> int:
    return hash(_values(self))


def _setattr(self, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


_METHODS = {"__init__": _init, "__repr__": _repr, "__eq__": _eq, "__hash__": _hash,
            "__setattr__": _setattr, "__delattr__": _delattr}
