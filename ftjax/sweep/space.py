"""A sweep's search space and fixed settings as `KEY=SPEC` items, separated by spaces, so that a command line
can change them (`--config.space="peft.rank=4|8|16 train.seed=0|1|2"`):

    peft.rank=4|8|16                          a choice (the only kind a grid takes); each value is read as an
                                              int, a float, true/false or text
    train.learning_rate=logfloat:1e-5:1e-2    float:LO:HI, logfloat:LO:HI, int:LO:HI, logint:LO:HI (inclusive)
    peft.method,train.learning_rate=lora,1e-3|full,5e-5
                                              linked keys: each choice sets every key, in order (a method at
                                              its own learning rate); a grid takes it as one parameter
    train.steps=120                           (in `overrides`) a fixed setting for every trial
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

RANGES = ("float", "logfloat", "int", "logint")


@dataclasses.dataclass(frozen=True)
class Param:
    key: str  # the dotted config key
    choices: tuple = ()  # a choice, or
    kind: str = ""  # a range: float | int, with bounds
    low: float = 0.0
    high: float = 0.0
    log: bool = False

    def distribution(self):
        """The Optuna distribution of this parameter."""
        import optuna

        if self.choices:
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)

    def bounds(self) -> tuple:
        """Values that span the parameter (for checking them against the config before any trial runs)."""
        return self.choices or (self.low, self.high)


def parse_value(text: str) -> Any:
    """'8' -> 8, '1e-3' -> 0.001, 'true' -> True, anything else stays text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _items(text: str, name: str) -> list[tuple[str, str]]:
    out = []
    for item in text.split():
        key, eq, spec = item.partition("=")
        if not eq or not key or not spec:
            raise ValueError(f"sweep.{name}: cannot read {item!r}; write KEY=SPEC items separated by spaces")
        out.append((key, spec))
    keys = [k for k, _ in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"sweep.{name}: {sorted({k for k in keys if keys.count(k) > 1})[0]!r} is given twice")
    return out


def parse_space(text: str) -> dict[str, Param]:
    """The space's parameters by key; a one-line ValueError names a malformed item."""
    space = {}
    for key, spec in _items(text, "space"):
        kind, colon, bounds = spec.partition(":")
        if colon and kind in RANGES:
            try:
                low, high = (float(b) for b in bounds.split(":"))
            except ValueError:
                raise ValueError(f"sweep.space: {key}={spec}: write {kind}:LOW:HIGH with two numbers") from None
            if not low < high or (kind.startswith("log") and low <= 0):
                raise ValueError(f"sweep.space: {key}={spec}: need LOW < HIGH" +
                                 (" and LOW > 0 on a log scale" if kind.startswith("log") else ""))
            space[key] = Param(key, kind=kind.removeprefix("log"), low=low, high=high, log=kind.startswith("log"))
        else:
            linked = "," in key
            choices = tuple(v if linked else parse_value(v) for v in spec.split("|"))
            if len(set(choices)) != len(choices):
                raise ValueError(f"sweep.space: {key}={spec}: a value is repeated")
            if linked and any(v.count(",") != key.count(",") for v in choices):
                raise ValueError(f"sweep.space: {key}={spec}: each choice needs {key.count(',') + 1} values, "
                                 "separated by commas")
            space[key] = Param(key, choices=choices)
    keys = [k for key in space for k in key.split(",")]
    if len(set(keys)) != len(keys):
        raise ValueError(f"sweep.space: {sorted({k for k in keys if keys.count(k) > 1})[0]!r} is given twice")
    return space


def settings_of(params: dict[str, Any]) -> dict[str, Any]:
    """Config settings from a trial's parameters: a linked parameter ("a,b" = "lora,1e-3") sets each of its keys."""
    out = {}
    for key, value in params.items():
        if "," in key:
            out.update(zip(key.split(","), (parse_value(v) for v in value.split(","))))
        else:
            out[key] = value
    return out


def parse_overrides(text: str) -> dict[str, Any]:
    return {key: parse_value(value) for key, value in _items(text, "overrides")}


def grid(space: dict[str, Param]) -> list[dict[str, Any]]:
    """Every point of a space of choices, in order (the last key varies fastest)."""
    ranged = [p.key for p in space.values() if not p.choices]
    if ranged:
        raise ValueError(f"sweep.sampler=grid takes choices only; {ranged[0]} is a range (use random or tpe)")
    return [dict(zip(space, values)) for values in itertools.product(*(p.choices for p in space.values()))]
