"""A sweep's result: rows of dim values → exact metric values, with float64 arrays, CSV and JSON."""
from __future__ import annotations

import json
from fractions import Fraction


class Table:
    """The metrics of one Analysis over a grid of dims.

    Iterating gives one dict per point, {dim: value, …, metric: exact value}, the first dim varying slowest; a
    value is an int, or a Fraction where not whole (times, tokens/s, bytes per device under sharding).
    `array(m)` is a metric (its name, or a short name sweep's `metrics` takes: "time") as float64 over the grid (shape: one axis per dim; whole values below 2**53 exact,
    others within one ulp); `exact(m)` the same as an object array of ints and Fractions."""

    def __init__(self, analysis, axes: dict, fixed: dict, metrics: list, result, columns: dict):
        self.analysis = analysis
        self.axes = {k: list(v) for k, v in axes.items()}
        self.fixed = dict(fixed)
        self.metrics = [m.name for m in metrics]
        self.units = {m.name: m.unit for m in metrics}
        self.titles = {m.name: m.title for m in metrics}
        self._defs = dict(columns)
        self._result = result
        self._floats: dict = {}
        self._objects: dict = {}

    # ---- shape
    @property
    def dims(self) -> list[str]:
        return list(self.axes)

    @property
    def shape(self) -> tuple:
        return tuple(len(v) for v in self.axes.values())

    def __len__(self) -> int:
        n = 1
        for k in self.shape:
            n *= k
        return n

    # ---- values
    def array(self, metric: str):
        """float64 values over the grid (shape `self.shape`)."""
        import numpy as np

        metric = self._name(metric)
        if metric not in self._floats:
            d = self._column(metric)
            if d.expr is not None:
                v = self._result[metric]
            else:
                t = self.array(d.over[0][0]) / float(d.over[0][1])
                for c, k in d.over[1:]:
                    t = np.maximum(t, self.array(c) / float(k))
                v = self.array(d.tokens) / t if d.tokens else t
            self._floats[metric] = np.broadcast_to(v, self.shape)
        return self._floats[metric]

    def exact(self, metric: str):
        """Exact values over the grid: an object array of ints and Fractions."""
        import numpy as np

        metric = self._name(metric)
        if metric not in self._objects:
            d = self._column(metric)
            if d.expr is not None:
                v = np.broadcast_to(self._result.objects(metric), self.shape)
            else:
                parts = [np.frompyfunc(lambda x, k=k: Fraction(x) / k, 1, 1)(self.exact(c)) for c, k in d.over]
                t = np.frompyfunc(max, 2, 1).reduce(np.stack(parts), axis=0) if len(parts) > 1 else parts[0]
                v = np.frompyfunc(lambda n, x: _simple(Fraction(n) / x), 2, 1)(self.exact(d.tokens), t) \
                    if d.tokens else np.frompyfunc(_simple, 1, 1)(t)
            self._objects[metric] = np.asarray(v, dtype=object).reshape(self.shape)
        return self._objects[metric]

    def column(self, metric: str) -> list:
        """Exact values in row order."""
        return self.exact(metric).reshape(-1).tolist()

    def __iter__(self):
        import numpy as np

        names = self.dims
        columns = [self.exact(m).reshape(-1).tolist() for m in self.metrics]
        for i, index in enumerate(np.ndindex(*self.shape)):
            row = {n: self.axes[n][j] for n, j in zip(names, index)}
            row.update((m, c[i]) for m, c in zip(self.metrics, columns))
            yield row

    def rows(self) -> list[dict]:
        return list(self)

    def _name(self, metric: str) -> str:
        """A metric's name, given it or the short name `sweep(metrics=…)` takes ("time", "memory", "tokens")."""
        from symcost.analysis.sweep import ALIASES

        return ALIASES[metric] if metric not in self._defs and ALIASES.get(metric) in self._defs else metric

    def _column(self, metric: str):
        if metric not in self._defs:
            from symcost.errors import SymcostError, suggest

            raise SymcostError(f"this table has no metric '{metric}'", None, suggest(metric, self.metrics))
        return self._defs[metric]

    # ---- formats
    def to_csv(self) -> str:
        """One header line (dims, then metrics), one line per point; whole values exact, others as the
        nearest float64 (shortest form that reads back the same)."""
        lines = [",".join(self.dims + self.metrics)]
        for row in self:
            lines.append(",".join(_csv_number(row[k]) for k in self.dims + self.metrics))
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        """{"spec", "phase", "device", "fixed", "over", "metrics": {name: {title, unit}}, "rows": [...]}; whole
        values are JSON integers (exact, however large), others the nearest float64."""
        req = self.analysis.request
        from symcost.paths import shareable

        doc = {"spec": self.analysis.name, "file": shareable(self.analysis.graph.file), "phase": req.phase,
               "device": self.analysis.device.name if self.analysis.device is not None else None,
               "fixed": self.fixed, "over": self.axes,
               "metrics": {m: {"title": self.titles[m], "unit": self.units[m]} for m in self.metrics},
               "rows": [{k: _json_number(v) for k, v in row.items()} for row in self]}
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"

    def __repr__(self) -> str:
        shape = " × ".join(f"{len(v)} {k}" for k, v in self.axes.items())
        return f"<symcost sweep of {self.analysis.name}: {shape} points, {len(self.metrics)} metrics>"


def _simple(x: Fraction):
    return x.numerator if x.denominator == 1 else x


def _json_number(v):
    if isinstance(v, int):
        return v
    try:
        return float(v)
    except OverflowError:
        from symcost.present.units import scientific

        return scientific(Fraction(v))


def _csv_number(v) -> str:
    out = _json_number(v)
    return str(out) if isinstance(out, int) else repr(out) if isinstance(out, float) else out
