"""The results table (stdout) and the raw results file (JSON) of a benchmark run.

Every figure is a :class:`Row`: a value measured in this run, optionally the reference it is
compared with (also measured in this run), how the two are compared (ratio or difference) and
a :class:`Target`. Rows without a target are reported for information ("info").
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ['Target', 'Row', 'format_table', 'write_results']


@dataclass(frozen=True)
class Target:
    """A bound on a measured value: ``value <op> limit``.

    Attributes:
        op: '<=' or '>='.
        kind: how the limit follows from the row's reference: 'ratio' (limit = amount *
            reference), 'diff' (limit = reference + amount, in the row's unit) or 'abs'
            (limit = amount, no reference needed).
        amount: the factor, offset or absolute limit.
    """

    op: str
    kind: str
    amount: float

    def limit(self, reference: float | None) -> float | None:
        """The bound for this reference (None when it needs a reference and has none)."""
        if self.kind == 'abs':
            return self.amount
        if reference is None:
            return None
        return self.amount * reference if self.kind == 'ratio' else reference + self.amount

    def met(self, value: float | None, reference: float | None) -> bool | None:
        """True/False, or None when the value or the limit is unknown."""
        limit = self.limit(reference)
        if value is None or limit is None or math.isnan(value):
            return None
        return value <= limit if self.op == '<=' else value >= limit

    def text(self, unit: str) -> str:
        """E.g. '>= 0.90x ref', '<= ref + 5 ms', '>= 29.5 /s'."""
        if self.kind == 'ratio':
            return f'{self.op} {self.amount:.2f}x ref'
        if self.kind == 'diff':
            return f'{self.op} ref {"+" if self.amount >= 0 else "-"} ' \
                   f'{_number(abs(self.amount), unit)} {unit}'
        return f'{self.op} {_number(self.amount, unit)} {unit}'


@dataclass
class Row:
    """One line of the table.

    Attributes:
        section: benchmark section ('classifier', 'camera', ...).
        metric: what was measured, e.g. '[pytorch] latency p50'.
        unit: unit of ``value`` and ``reference`` ('ms', 's', '/s', 'frames', ...).
        value: the measured figure (None: could not be measured; ``note`` says why).
        reference: the figure it is compared with, measured in the same run (or None).
        reference_is: what the reference is, in a few words.
        compare: 'ratio' (value / reference) or 'diff' (value - reference) for the table.
        target: the goal (None: informational row).
        note: anything the reader needs to interpret the row.
    """

    section: str
    metric: str
    unit: str
    value: float | None
    reference: float | None = None
    reference_is: str = ''
    compare: str = 'ratio'
    target: Target | None = None
    note: str = ''

    @property
    def result(self) -> str:
        """'PASS', 'MISS', 'info' (no target) or 'n/a' (not measurable)."""
        if self.target is None:
            return 'info'
        met = self.target.met(self.value, self.reference)
        return 'n/a' if met is None else ('PASS' if met else 'MISS')

    def versus(self) -> str:
        """The comparison with the reference as shown in the table."""
        if self.value is None or self.reference is None:
            return '-'
        if self.compare == 'diff':
            diff = round(self.value - self.reference, _decimals(self.unit)) + 0.0  # no '-0'
            return f'{diff:+.{_decimals(self.unit)}f} {self.unit}'
        if self.reference == 0:
            return '-'
        return f'{self.value / self.reference:.2f}x'

    def to_json(self) -> dict:
        out = asdict(self)
        out['target'] = self.target.text(self.unit) if self.target else None
        out['target_limit'] = self.target.limit(self.reference) if self.target else None
        out['versus'] = self.versus()
        out['result'] = self.result
        return out


def _decimals(unit: str) -> int:
    return {'ms': 1, 's': 2, '/s': 1, 'ms/s': 1, 'x': 2}.get(unit, 0)


def _number(x: float, unit: str) -> str:
    return f'{x:.{_decimals(unit)}f}'


def _cell(x: float | None, unit: str) -> str:
    return '-' if x is None or (isinstance(x, float) and math.isnan(x)) else \
        f'{_number(x, unit)} {unit}'


def format_table(rows: list[Row]) -> str:
    """Plain-text table of ``rows`` (one line each) followed by the notes of rows that have
    one, numbered (a note shared by several rows is listed once)."""
    header = ('section', 'metric', 'measured', 'reference', 'vs ref', 'target', 'result',
              'reference is')
    notes: list[str] = []
    lines = []
    for row in rows:
        metric = row.metric
        if row.note:
            if row.note not in notes:
                notes.append(row.note)
            metric = f'{metric} [{notes.index(row.note) + 1}]'
        lines.append((row.section, metric, _cell(row.value, row.unit),
                      _cell(row.reference, row.unit), row.versus(),
                      row.target.text(row.unit) if row.target else '-', row.result,
                      row.reference_is or '-'))
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    right = {2, 3, 4}  # numbers

    def fmt(cells):
        return '  '.join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [fmt(header), '  '.join('-' * w for w in widths)]
    section = None
    for row, cells in zip(rows, lines):
        if section is not None and row.section != section:
            out.append('')
        section = row.section
        out.append(fmt(cells))
    if notes:
        out.append('')
        out += [f'[{i}] {n}' for i, n in enumerate(notes, 1)]
    return '\n'.join(out)


def write_results(results: dict, directory: Path, stamp: str) -> Path:
    """Write ``results`` as ``<directory>/<stamp>.json`` and copy it to ``latest.json``;
    returns the first path."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=False, default=str) + '\n'
    path = directory / f'{stamp}.json'
    path.write_text(text)
    (directory / 'latest.json').write_text(text)
    return path
