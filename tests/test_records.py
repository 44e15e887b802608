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


def test_this_modules_field_replace_and_asdict_match_the_dataclasses_ones():
    from podmagic import records

    made = []
    for deco, fld in ((record, records.field), (dataclass(frozen=True), field)):
        @deco
        class Inner:
            x: int
            ys: tuple = ()

        @deco
        class Outer:
            inner: Inner
            items: list = fld(default_factory=list)
            table: dict = fld(default_factory=dict, repr=False)
            hidden: int = fld(default=0, init=False)
        made.append((Inner, Outer))
    (oi, oo), (ti, to) = made
    ours, theirs = oo(oi(1, (2,)), [oi(3)], {"k": [1]}), to(ti(1, (2,)), [ti(3)], {"k": [1]})
    assert records.asdict(ours) == dataclasses.asdict(theirs) == dataclasses.asdict(ours)
    assert records.asdict(ours)["table"] is not ours.table  # a copy, as dataclasses makes
    assert repr(records.replace(ours, items=[])) == repr(dataclasses.replace(theirs, items=[]))
    with pytest.raises(ValueError, match="init=False"):
        records.replace(ours, hidden=1)
    with pytest.raises(ValueError, match="init=False"):
        dataclasses.replace(ours, hidden=1)
    assert [(f.name, f.init, f.repr) for f in dataclasses.fields(ours)] == [(f.name, f.init, f.repr) for f in dataclasses.fields(theirs)]


def test_mutable_is_a_dataclass_that_may_be_assigned():
    from podmagic.records import field as rfield
    from podmagic.records import mutable

    made = []
    for deco, fld in ((mutable, rfield), (dataclass, field)):
        @deco
        class Outcome:
            started: float
            failed: bool = True
            notes: list = fld(default_factory=list)
        made.append(Outcome)
    ours, theirs = made[0](1.0), made[1](1.0)
    ours.failed, theirs.failed = False, False
    ours.notes.append("x"), theirs.notes.append("x")
    assert repr(ours).split("(", 1)[1] == repr(theirs).split("(", 1)[1]
    assert ours == made[0](1.0, False, ["x"]) and made[0].__hash__ is None and made[1].__hash__ is None
    assert made[0](2.0).notes == [] and dataclasses.asdict(ours) == dataclasses.asdict(theirs)


@pytest.mark.parametrize("body,error", [
    ("a: int = 1\n    b: int\n", TypeError),  # a required field after a default one
    ("a: list = []\n", ValueError),            # a mutable default
])
def test_a_class_dataclass_refuses_is_refused(body, error):
    for deco in ("record", "dataclass(frozen=True)"):
        code = f"@{deco}\nclass Bad:\n    {body}"
        with pytest.raises(error):
            exec(code, {"record": record, "dataclass": dataclass})


def test_classvars_are_not_fields_and_nothing_imports_dataclasses_until_asked():
    import subprocess
    import sys

    code = ("import sys; from typing import ClassVar; from podmagic.records import record\n"
            "@record\nclass R:\n    KIND: ClassVar[str] = 'r'\n    a: int = 1\n"
            "r = R(2); before = 'dataclasses' in sys.modules or 'inspect' in sys.modules\n"
            "import dataclasses\nprint(before, [f.name for f in dataclasses.fields(r)], R.KIND, dataclasses.replace(r, a=3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert out[0] == "False" and out[1].strip() == "['a'] r R(a=3)"
