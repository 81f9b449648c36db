"""Settings of the stages, each written once: a dataclass field carries its default, its range or
choices, what it means and whether it may change while the stage runs.

The nodes declare one ROS parameter per field (nested dataclasses give dotted names such as
`detector.score_threshold`), with the description and range in the parameter descriptor and
read-only where the field is not dynamic; the config files, the README tables and the tests are
checked against these classes. Code without ROS builds the same dataclasses (their defaults are the
nodes' defaults) and calls `check` on them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

RESTART_NOTE = '(read once at start: restart the node to change it)'


@dataclass(frozen=True)
class Spec:
    """What one setting is, beside its default."""
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    dynamic: bool = False  # may change while the stage runs


def setting(default: Any, description: str, *, minimum: float | None = None, maximum: float | None = None,
            choices: tuple[str, ...] = (), dynamic: bool = False) -> Any:
    """A dataclass field holding one setting (see Spec)."""
    return field(default=default, metadata={'spec': Spec(description, minimum, maximum, tuple(choices), dynamic)})


def group(cls: type) -> Any:
    """A dataclass field holding a nested group of settings (its fields get `name.` as a prefix)."""
    return field(default_factory=cls, metadata={'group': True})


def leaves(settings_class: type, prefix: str = '') -> Iterator[tuple[str, Any, Spec]]:
    """(dotted name, default, spec) of every setting of a settings dataclass, groups expanded. Plain
    fields (neither a setting nor a group) are the stage's own constants, not settings."""
    for item in dataclasses.fields(settings_class):
        if 'spec' in item.metadata:
            yield prefix + item.name, item.default, item.metadata['spec']
        elif item.metadata.get('group'):
            yield from leaves(item.default_factory, f'{prefix}{item.name}.')


def get(settings: Any, name: str) -> Any:
    """The value of dotted `name` in a settings instance."""
    for part in name.split('.'):
        settings = getattr(settings, part)
    return settings


def replaced(settings: Any, name: str, value: Any) -> Any:
    """A copy of `settings` with dotted `name` set to `value` (groups copied along the path)."""
    head, _, rest = name.partition('.')
    return dataclasses.replace(settings, **{head: replaced(getattr(settings, head), rest, value) if rest else value})


def build(settings_class: type, values: dict[str, Any]) -> Any:
    """An instance of `settings_class` from {dotted name: value} (missing names keep their defaults)."""
    settings = settings_class()
    for name, value in values.items():
        settings = replaced(settings, name, value)
    return settings


def problem(name: str, value: Any, spec: Spec) -> str:
    """Why `value` is not allowed for setting `name` ('' if it is)."""
    if spec.choices and value not in spec.choices:
        return f'{name} must be {", ".join(spec.choices[:-1])} or {spec.choices[-1]}, got {value!r}'
    if spec.minimum is not None and value < spec.minimum or spec.maximum is not None and value > spec.maximum:
        return f'{name} must lie in [{spec.minimum:g}, {spec.maximum:g}], got {value!r}'
    return ''


def check(settings: Any) -> Any:
    """`settings` if every value is allowed, else ValueError naming the first that is not."""
    for name, _, spec in leaves(type(settings)):
        reason = problem(name, get(settings, name), spec)
        if reason:
            raise ValueError(reason)
    return settings


def spec_of(settings_class: type, name: str) -> Spec:
    """The spec of dotted `name` in a settings class (KeyError if there is none)."""
    for leaf, _, spec in leaves(settings_class):
        if leaf == name:
            return spec
    raise KeyError(name)

