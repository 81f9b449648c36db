"""The parameter reference (docs/parameters.md), written from the settings dataclasses: the one
place each setting is defined. `python -m fer3d_ros.tools.reference > docs/parameters.md`; a test
checks that the committed file is what this prints.
"""
from __future__ import annotations

import sys

from fer3d_ros.core.settings import leaves
from fer3d_ros.nodes.parameters import LifecycleSettings, ProcessSettings
from fer3d_ros.nodes.pipeline import STAGES
from fer3d_ros.nodes.video_camera import VideoCameraSettings


def node_settings() -> dict[str, list[type]]:
    """Executable -> the settings classes it declares, in order."""
    nodes = {}
    for node_class, _ in STAGES.values():
        classes = [ProcessSettings, LifecycleSettings, node_class.input_settings_class,
                   node_class.output_settings_class, node_class.settings_class]
        nodes[node_class.__module__.rsplit('.', 1)[-1]] = [c for c in classes if c is not None]
    nodes['video_camera'] = [ProcessSettings, VideoCameraSettings]
    return nodes


def cell(text: str) -> str:
    return str(text).replace('|', '\\|')


def value_text(default) -> str:
    return '""' if default == '' else str(default).lower() if isinstance(default, bool) else str(default)


def limits(spec) -> str:
    if spec.choices:
        return ', '.join(str(choice) for choice in spec.choices)
    if spec.minimum is None:
        return ''
    return f'{spec.minimum:.10g} to {spec.maximum:.10g}'


def reference() -> str:
    lines = ['# Parameter reference', '',
             'Written by `python -m fer3d_ros.tools.reference` from the settings dataclasses (each setting is',
             'defined once, in `fer3d_ros/core` for the stages and beside the node for its inputs); a test keeps',
             'this file in step. *Dynamic* parameters change while the node runs (`ros2 param set`); the others',
             'are read at start (restart the node). Every node also has `use_sim_time`.', '']
    for node, classes in node_settings().items():
        lines += [f'## {node}', '', '| parameter | default | range or choices | dynamic | meaning |',
                  '|---|---|---|---|---|']
        for settings_class in classes:
            for name, default, spec in leaves(settings_class):
                lines.append(f'| `{name}` | {cell(value_text(default))} | {cell(limits(spec))} | '
                             f'{"yes" if spec.dynamic else ""} | {cell(spec.description)} |')
        lines.append('')
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.stdout.write(reference())
