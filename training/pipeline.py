"""From data to shipped models: the training sequence, one step after another, each with what it
reads and what it writes.

    python -m training.pipeline                    # the sequence and every other tool, with what they do
    python -m training.pipeline run                # every step (hours on a CPU; a GPU for `train`)
    python -m training.pipeline run --from emotion # from a step on (earlier outputs kept)
    python -m training.pipeline run --quick --out /tmp/fer3d_quick   # the whole sequence on a small subset

A full run writes the shipped files into models/ (`install` copies the regressor there, `emotion` and
`action_units` write theirs straight in); a --quick run writes everything under --out and never
touches models/ or data/. Each step is a tool of this package run as its own process, as by hand.
"""
from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from training.paths import DATA, MODELS, OUT, REPO

REGRESSOR = 'deepexp3d_mnv2_96'


@dataclass(frozen=True)
class Step:
    name: str
    tool: str                 # a module of this package (python -m training.<tool>)
    reads: str
    writes: str
    what: str

    def invocations(self, paths: dict[str, Path], quick: bool) -> list[list[str]]:
        """The tool's command-line arguments for this run, once per time it is run."""
        return STEP_ARGUMENTS[self.name](paths, quick)


STEPS = (
    Step('dataset', 'build_dataset', '../shared/data: videos, ckplus_128, facial_expressions, ferplus',
         '<data>/dataset: manifest.csv and the registered crops, with each crop\'s fitted coefficients',
         'registers every face to the template and fits the 3DMM to whole videos and image sets '
         '(pseudo-ground truth); resumable'),
    Step('train', 'train_multitask', '<data>/dataset/manifest.csv',
         f'<out>/multitask: best.pt, {REGRESSOR}.onnx + .json card, emotion_head.npz, the training log',
         'trains DeepExp3D (MobileNetV2, 96 px) on the pseudo-ground truth and, through the coefficients, on '
         'FER+ votes; exports the ONNX model; resumable'),
    Step('emotion', 'select_emotion_classifier', f'the {REGRESSOR}.onnx just trained, the dataset, CK+',
         '<models>/emotion_classifier.npz and emotion_classifier_calibrated.npz',
         "chooses emotion_node's classifiers (FER+ Valid, CK+ subject-wise CV)"),
    Step('action_units', 'eval_action_units', f'the {REGRESSOR}.onnx just trained, CK+ FACS codes',
         '<models>/action_units.json', 'fits the AU presence models and prints the AU table'),
    Step('install', '', f'<out>/multitask/{REGRESSOR}.onnx + .json', f'<models>/{REGRESSOR}.onnx + .json',
         'copies the regressor where the nodes find it (models/ in a full run)'),
)
STEP_NAMES = tuple(step.name for step in STEPS)


# A quick run: a dozen CK+ subjects, three FER+ blocks of 500 images (one per split), one epoch.
QUICK_CKPLUS_SUBJECTS, QUICK_FERPLUS_BLOCKS = 12, 3


def _dataset(paths: dict[str, Path], quick: bool) -> list[list[str]]:
    out = ['--out', str(paths['data'] / 'dataset')]
    if quick:
        return [[*out, '--sources', 'ckplus', '--limit', str(QUICK_CKPLUS_SUBJECTS)],
                [*out, '--sources', 'ferplus', '--limit', str(QUICK_FERPLUS_BLOCKS)]]
    return [out]


def _train(paths: dict[str, Path], quick: bool) -> list[list[str]]:
    options = ['--epochs', '1', '--max-train-images', '64', '--batch-size', '16'] if quick else \
        ['--epochs', '14', '--threads', '2', '--resume']
    return [['--manifest', str(paths['data'] / 'dataset' / 'manifest.csv'), '--arch', 'mobilenetv2',
             '--input-size', '96', '--out', str(paths['out'] / 'multitask'), *options]]


def _emotion(paths: dict[str, Path], quick: bool) -> list[list[str]]:
    options = ['--candidates', 'joint', 'mlp', '--folds', '3', '--ckplus-subjects', str(QUICK_CKPLUS_SUBJECTS),
               '--cache', str(paths['data'])] if quick else \
        ['--candidates', 'joint', 'mlp', 'mlp-ck10', 'mlp-balanced', 'mlp-ck10-x5', 'mlp-balanced-x5']
    return [['--model', str(paths['out'] / 'multitask' / f'{REGRESSOR}.onnx'),
             '--manifest', str(paths['data'] / 'dataset' / 'manifest.csv'),
             '--out', str(paths['models'] / 'emotion_classifier.npz'),
             '--calibrated-out', str(paths['models'] / 'emotion_classifier_calibrated.npz'), *options]]


def _action_units(paths: dict[str, Path], quick: bool) -> list[list[str]]:
    options = ['--ckplus-subjects', str(QUICK_CKPLUS_SUBJECTS), '--cache', str(paths['data'])] if quick else []
    return [['--model', str(paths['out'] / 'multitask' / f'{REGRESSOR}.onnx'),
             '--out', str(paths['models'] / 'action_units.json'), *options]]


STEP_ARGUMENTS = {'dataset': _dataset, 'train': _train, 'emotion': _emotion, 'action_units': _action_units,
                  'install': lambda paths, quick: []}


def install(paths: dict[str, Path]) -> None:
    for suffix in ('.onnx', '.json'):
        source = paths['out'] / 'multitask' / f'{REGRESSOR}{suffix}'
        shutil.copy2(source, paths['models'] / source.name)
        print(f'installed {paths["models"] / source.name}')


def tools() -> list[tuple[str, str]]:
    """(module, first line of its docstring) of every tool of this package (a module with a main)."""
    found = []
    for path in sorted(Path(__file__).parent.glob('*.py')):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == 'main' for node in tree.body):
            found.append((path.stem, (ast.get_docstring(tree) or '').split('\n')[0]))
    return found


def describe() -> str:
    lines = ['The sequence (python -m training.pipeline run):']
    for number, step in enumerate(STEPS, 1):
        command = f'python -m training.{step.tool}' if step.tool else '(copy)'
        lines += [f'{number}. {step.name}: {command}', f'   {step.what}', f'   reads {step.reads}',
                  f'   writes {step.writes}']
    in_sequence = {step.tool for step in STEPS} | {'pipeline'}
    lines += ['', 'The other tools (run by hand; each prints its own usage with --help):']
    lines += [f'- training.{name}: {line}' for name, line in tools() if name not in in_sequence]
    return '\n'.join(lines)


def run(steps: list[Step], paths: dict[str, Path], quick: bool) -> None:
    for step in steps:
        print(f'== {step.name}: {step.what}', flush=True)
        if step.name == 'install':
            install(paths)
            continue
        for arguments in step.invocations(paths, quick):
            command = [sys.executable, '-m', f'training.{step.tool}', *arguments]
            print('  ' + ' '.join(command), flush=True)
            result = subprocess.run(command, cwd=REPO)
            if result.returncode:
                raise SystemExit(f'step {step.name} failed (exit status {result.returncode}); fix it and resume '
                                 f'with --from {step.name}')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('action', nargs='?', choices=('list', 'run'), default='list')
    parser.add_argument('--from', dest='first', choices=STEP_NAMES, default=STEP_NAMES[0])
    parser.add_argument('--to', dest='last', choices=STEP_NAMES, default=STEP_NAMES[-1])
    parser.add_argument('--quick', action='store_true', help='the whole sequence on a small subset, under --out')
    parser.add_argument('--out', type=Path, help='folder for everything a --quick run writes')
    args = parser.parse_args(argv)
    if args.action == 'list':
        print(describe())
        return
    if args.quick and args.out is None:
        parser.error('--quick writes under --out: give a folder')
    root = args.out
    paths = {'data': root / 'data', 'out': root / 'out', 'models': root / 'models'} if args.quick else \
        {'data': DATA, 'out': OUT, 'models': MODELS}
    for folder in paths.values():
        folder.mkdir(parents=True, exist_ok=True)
    first, last = STEP_NAMES.index(args.first), STEP_NAMES.index(args.last)
    run(list(STEPS[first:last + 1]), paths, args.quick)


if __name__ == '__main__':
    main()
