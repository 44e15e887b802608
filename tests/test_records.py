"""`@record` behaves as `@dataclass(frozen=True)` does, checked side by side against the real thing."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import dataclass, field

import pytest

from podmagic.records import record


def _pair():
    """The same class twice: once as a record, once as a frozen dataclass."""
    made = []
    for deco in (record, dataclass(frozen=True)):
        @deco
        class Spec:
            name: str
            count: int = 1
            tags: tuple[str, ...] = ()
            extra: dict = field(default_factory=dict)
            where: dict = field(default_factory=dict, repr=False, compare=False)
        made.append(Spec)
    return made


@pytest.mark.parametrize("args,kwargs", [(("a",), {}), (("a", 2), {"tags": ("x",)}), ((), {"name": "b", "extra": {"k": 1}})])
def test_construction_repr_equality_and_fields_match_a_frozen_dataclass(args, kwargs):
    ours_cls, theirs_cls = _pair()
    ours, theirs = ours_cls(*args, **kwargs), theirs_cls(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert dataclasses.asdict(ours) == dataclasses.asdict(theirs)
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(theirs)]
    assert ours == ours_cls(*args, **kwargs) and ours != ours_cls("other")
    assert ours == dataclasses.replace(ours, where={"line": 3})  # compare=False fields do not count
    assert dataclasses.replace(ours, count=9).count == 9 and ours.count != 9
    assert dataclasses.is_dataclass(ours) and ours.__match_args__ == theirs.__match_args__


def test_defaults_are_fresh_and_hash_follows_the_compared_fields():
    @record
    class Key:
        a: int
        b: tuple = ()
        c: list = field(default_factory=list, compare=False)

    one, two = Key(1), Key(1)
    assert one.c is not two.c
    assert hash(one) == hash(two) and len({one, two, Key(2)}) == 2


@pytest.mark.parametrize("call,message", [
    (lambda c: c(), "missing required argument: 'name'"),
    (lambda c: c("a", name="b"), "multiple values for argument 'name'"),
    (lambda c: c("a", colour="red"), "unexpected keyword argument 'colour'"),
    (lambda c: c("a", 1, (), {}, {}, 6), "takes 5 positional arguments but 6 were given"),
])
def test_wrong_arguments_are_type_errors(call, message):
    ours_cls, theirs_cls = _pair()
    with pytest.raises(TypeError) as ours:
        call(ours_cls)
    with pytest.raises(TypeError):
        call(theirs_cls)
    assert message in str(ours.value)


@record
class Base:
    a: int


@record
class Child(Base):
    b: int = 2

    def __post_init__(self):
        object.__setattr__(self, "b", self.b * 10)


def test_frozen_picklable_copyable_and_post_init_runs():
    child = Child(1, b=3)
    assert (child.a, child.b) == (1, 30) and repr(child) == "Child(a=1, b=30)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        child.a = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        del child.a
    assert pickle.loads(pickle.dumps(child)) == child and copy.deepcopy(child) == child
    match child:
        case Child(a, b):
            assert (a, b) == (1, 30)
