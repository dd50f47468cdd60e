"""What became of the documents oxstash shipped, and why some were not indexed.

A `ShipResult` counts documents indexed, already present, rejected, given
up and input that was not an event, and groups the failures by kind so that
the closing report says each kind in one line with its count
(``3 documents not indexed: node unreachable (http://es1:9200)``). Part of
`blueox.cli.oxstash`, which re-exports it.
"""

from blueox.cli import plural

__all__ = ["ShipResult"]


class _FailureKind:
    """One kind of failure in a `ShipResult`: how many documents, and why.

    ``what`` may hold ``{node}``, said as "node" or "nodes" after how many
    ``nodes`` failed so; ``example`` is the first detail seen (``same`` while
    every detail seen was the same).
    """

    def __init__(self, what, nodes=(), example=None):
        self.count = 0
        self.what = what
        self.nodes = list(nodes)
        self.example = example
        self.same = True

    def merge(self, count, nodes=(), example=None):
        self.count += count
        for node in nodes:
            if node not in self.nodes:
                self.nodes.append(node)
        if example != self.example:
            self.same = False

    def line(self):
        text = self.what.replace("{node}", "nodes" if len(self.nodes) > 1 else "node")
        if self.nodes:
            text += f" ({', '.join(self.nodes)})"
        if self.example is not None:
            text += f": {self.example}" if self.same else f" (for example {self.example})"
        return f"{plural(self.count, 'document')} not indexed: {text}"


class ShipResult:
    """Counts of what became of shipped documents, and why some were not indexed."""

    def __init__(self):
        self.indexed = 0
        self.duplicates = 0
        self.rejected = 0
        self.lost = 0
        self.bad_events = 0
        self.failures = {}  # key -> _FailureKind, in the order first seen

    @property
    def failed(self):
        return self.rejected + self.lost + self.bad_events

    def count_failure(self, key, count, what, nodes=(), example=None):
        """Count ``count`` documents not indexed for the reason ``key``."""
        kind = self.failures.get(key)
        if kind is None:
            kind = self.failures[key] = _FailureKind(what, nodes, example)
        kind.merge(count, nodes, example)

    def add(self, other):
        for name in ("indexed", "duplicates", "rejected", "lost", "bad_events"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, kind in other.failures.items():
            mine = self.failures.get(key)
            if mine is None:
                self.failures[key] = kind
            else:
                mine.merge(kind.count, kind.nodes, kind.example)
                mine.same = mine.same and kind.same

    def failure_lines(self):
        """One line per kind of failure: ``N documents not indexed: why``."""
        return [kind.line() for kind in self.failures.values()]

    def summary(self):
        return (
            f"{self.indexed} documents indexed, {self.duplicates} already present, "
            f"{self.rejected} rejected, {self.lost} given up, "
            f"{self.bad_events} not events"
        )
