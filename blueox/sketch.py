"""Mergeable summaries of a stream in bounded memory: quantiles and frequent values.

`QuantileSketch` answers "what is the 99th percentile" for any number of
values with a stated relative accuracy, in at most ``max_buckets`` counters
per sign, whatever the input. It is a DDSketch (Masson, Rim and Lee, "DDSketch:
a fast and fully-mergeable quantile sketch with relative-error guarantees",
VLDB 2019): a value ``x > 0`` is counted in bucket ``ceil(log(x) / log(gamma))``
with ``gamma = (1 + a) / (1 - a)``, and a bucket stands for the value that is
within ``a`` (relative) of everything in it. With the default ``a = 0.01``
every quantile is within 1% of the true one. Negative values are counted in a
second set of buckets by their magnitude, zero (and anything smaller in
magnitude than the smallest normal float) in a counter of its own.

Each set of buckets covers at most ``max_buckets`` consecutive indices. When a
value would widen it past that, the lowest buckets (the magnitudes nearest
zero) are folded into the lowest one that is kept: quantiles that land there
lose their accuracy, the others keep it. The default 2048 buckets at 1% cover
a ratio of about 10^17 between the largest and smallest magnitude (a
nanosecond to thirty years) before anything is folded; `collapsed` says
whether it happened. The result does not depend on the order of the values,
so merging the sketches of two streams gives exactly the sketch of both.

`TopCounter` counts the most frequent values of a stream in at most
``capacity`` counters (the Misra-Gries summary, mergeable as in Agarwal et
al., "Mergeable summaries", PODS 2012). While there are no more distinct
values than counters the counts are exact; past that a count may be low by
at most `error`, which is no more than ``total / (capacity + 1)``, and every
value more frequent than that is kept.

Both have ``to_dict()`` and ``from_dict()`` to travel as JSON.
"""

import math
import sys

__all__ = [
    "QuantileSketch",
    "TopCounter",
    "DEFAULT_RELATIVE_ACCURACY",
    "DEFAULT_MAX_BUCKETS",
    "DEFAULT_CAPACITY",
]

DEFAULT_RELATIVE_ACCURACY = 0.01
DEFAULT_MAX_BUCKETS = 2048
DEFAULT_CAPACITY = 1000

# Magnitudes below this (subnormal floats) are counted as zero.
_SMALLEST = sys.float_info.min


class _Buckets:
    """Counts per bucket index for one sign: a list covering at most
    ``max_buckets`` consecutive indices from ``offset`` on.

    What falls below the window is counted in its lowest bucket, so the
    state is the same whatever order the indices came in.
    """

    __slots__ = ("counts", "offset", "max_buckets", "collapsed")

    def __init__(self, max_buckets):
        self.counts = []
        self.offset = 0
        self.max_buckets = max_buckets
        self.collapsed = False

    def add(self, index, count=1):
        position = index - self.offset
        if 0 <= position < len(self.counts):
            self.counts[position] += count
        else:
            self._add_outside(index, count)

    def _add_outside(self, index, count):
        counts = self.counts
        if not counts:
            counts.append(count)
            self.offset = index
            return
        top = self.offset + len(counts) - 1
        if index < self.offset:
            low = max(index, top - self.max_buckets + 1)
            if low < self.offset:
                counts[:0] = [0] * (self.offset - low)
                self.offset = low
            if index < low:
                self.collapsed = True
            counts[max(index, low) - self.offset] += count
            return
        low = index - self.max_buckets + 1
        if low > self.offset:
            cut = low - self.offset
            folded = sum(counts[:cut])
            del counts[:cut]
            if not counts:
                counts.append(0)
            counts[0] += folded
            self.offset = low
            self.collapsed = self.collapsed or folded > 0
        counts.extend([0] * (index - (self.offset + len(counts) - 1)))
        counts[-1] += count

    def items(self):
        """``(index, count)`` of the buckets that are not empty, lowest index first."""
        offset = self.offset
        return [(offset + i, c) for i, c in enumerate(self.counts) if c]

    def total(self):
        return sum(self.counts)


class QuantileSketch:
    """Quantiles of a stream of numbers within ``relative_accuracy``, in bounded memory.

    ``count``, ``sum``, ``min`` and ``max`` are exact (``min`` and ``max`` are
    None while it is empty). See the module's docstring for the guarantees.
    """

    def __init__(self, relative_accuracy=DEFAULT_RELATIVE_ACCURACY,
                 max_buckets=DEFAULT_MAX_BUCKETS):
        if not 0 < relative_accuracy < 1:
            raise ValueError(f"relative accuracy must be between 0 and 1, not {relative_accuracy}")
        if not isinstance(max_buckets, int) or max_buckets < 1:
            raise ValueError(f"max_buckets must be a whole number above 0, not {max_buckets}")
        self.relative_accuracy = relative_accuracy
        self.max_buckets = max_buckets
        self._gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._multiplier = 1 / self._log_gamma
        # The log of a bucket's value is index * log(gamma) - this.
        self._value_shift = math.log((1 + self._gamma) / 2)
        self._positive = _Buckets(max_buckets)
        self._negative = _Buckets(max_buckets)
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = None
        self.max = None
        # Whether every value added was a whole number (see `quantile`).
        self.integers = True

    def add(self, value):
        """Count one finite number; anything else raises `ValueError`
        (`TypeError` for what is not a number)."""
        if isinstance(value, (str, bytes, bytearray)):
            raise TypeError(f"not a number: {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"not a finite number: {value}") from None
        if not math.isfinite(number):
            raise ValueError(f"not a finite number: {value}")
        if number > _SMALLEST:
            self._positive.add(math.ceil(math.log(number) * self._multiplier))
        elif number < -_SMALLEST:
            self._negative.add(math.ceil(math.log(-number) * self._multiplier))
        else:
            self.zero_count += 1
        self.count += 1
        self.sum += number
        if self.min is None or number < self.min:
            self.min = number
        if self.max is None or number > self.max:
            self.max = number
        if self.integers and type(value) is not int and not number.is_integer():
            self.integers = False

    @property
    def mean(self):
        """The exact mean, or None while empty."""
        return self.sum / self.count if self.count else None

    @property
    def bucket_count(self):
        """How many bucket counters are held (at most ``2 * max_buckets``)."""
        return len(self._positive.counts) + len(self._negative.counts)

    @property
    def collapsed(self):
        """Whether the lowest magnitudes were folded together to stay under the cap."""
        return self._positive.collapsed or self._negative.collapsed

    def _value(self, index):
        try:
            return math.exp(index * self._log_gamma - self._value_shift)
        except OverflowError:
            return math.inf

    def quantile(self, q):
        """The value at quantile ``q`` (0 to 1), or None while empty.

        It estimates the value of rank ``floor(q * (count - 1))`` (from 0) in
        sorted order, within the relative accuracy; ``quantile(0)`` is
        ``min`` and ``quantile(1)`` is ``max``, exactly. When every value
        added was a whole number, an estimate smaller in magnitude than
        ``0.45 * (1 - a) / a`` (44 at 1%) is rounded to the whole number it
        must then be, exactly.
        """
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be between 0 and 1, not {q}")
        if not self.count:
            return None
        if q == 0:
            return self.min
        if q == 1:
            return self.max
        rank = q * (self.count - 1)
        seen = 0
        estimate = None
        for index, count in reversed(self._negative.items()):
            seen += count
            if seen > rank:
                estimate = -self._value(index)
                break
        else:
            seen += self.zero_count
            if seen > rank:
                estimate = 0.0
            else:
                for index, count in self._positive.items():
                    seen += count
                    if seen > rank:
                        estimate = self._value(index)
                        break
                else:
                    estimate = self.max
        estimate = min(max(estimate, self.min), self.max)
        a = self.relative_accuracy
        if self.integers and abs(estimate) < 0.45 * (1 - a) / a:
            estimate = float(round(estimate))
        return estimate

    def merge(self, other):
        """Add ``other``'s values to this sketch (the same relative accuracy is
        required); the result is the sketch of both streams."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                f"cannot merge sketches of relative accuracy {other.relative_accuracy} "
                f"and {self.relative_accuracy}"
            )
        for mine, theirs in ((self._positive, other._positive), (self._negative, other._negative)):
            for index, count in theirs.items():
                mine.add(index, count)
            mine.collapsed = mine.collapsed or theirs.collapsed
        self.zero_count += other.zero_count
        self.count += other.count
        self.sum += other.sum
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        self.integers = self.integers and other.integers

    def to_dict(self):
        """The sketch as JSON-ready values; `from_dict` reads it back."""
        return {
            "relative_accuracy": self.relative_accuracy,
            "max_buckets": self.max_buckets,
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "integers": self.integers,
            "zero_count": self.zero_count,
            "positive": [list(item) for item in self._positive.items()],
            "negative": [list(item) for item in self._negative.items()],
            "collapsed": self.collapsed,
        }

    @classmethod
    def from_dict(cls, data):
        """A sketch from `to_dict`'s values; raises `ValueError` for anything else."""
        try:
            sketch = cls(data["relative_accuracy"], data["max_buckets"])
            for name, buckets in (("positive", sketch._positive), ("negative", sketch._negative)):
                for index, count in data[name]:
                    if not (_whole(index) and _whole(count) and count > 0):
                        raise ValueError(f"bad {name} bucket {index!r}: {count!r}")
                    buckets.add(index, count)
                buckets.collapsed = buckets.collapsed or bool(data.get("collapsed"))
            sketch.zero_count = data["zero_count"]
            sketch.count = data["count"]
            sketch.sum = float(data["sum"])
            sketch.min, sketch.max = data["min"], data["max"]
            sketch.integers = bool(data.get("integers", False))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a quantile sketch: {e}") from None
        counted = sketch.zero_count + sketch._positive.total() + sketch._negative.total()
        if not _whole(sketch.count) or counted != sketch.count:
            raise ValueError(f"not a quantile sketch: count {sketch.count!r}, {counted} in buckets")
        if (sketch.min is None) != (sketch.count == 0) or (sketch.max is None) != (sketch.count == 0):
            raise ValueError("not a quantile sketch: min and max do not match the count")
        return sketch

    def __repr__(self):
        return (
            f"<QuantileSketch count={self.count} min={self.min} max={self.max} "
            f"buckets={self.bucket_count}>"
        )


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


class TopCounter:
    """The most frequent values of a stream, in at most ``capacity`` counters.

    Values must be hashable (and, for `to_dict`, JSON values such as strings);
    keep them short, since each counter holds one. ``total`` counts every
    value added; a kept value's count is low by at most ``error`` (0 while
    the counts are exact).
    """

    def __init__(self, capacity=DEFAULT_CAPACITY):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a whole number above 0, not {capacity}")
        self.capacity = capacity
        self.counts = {}
        self.total = 0
        self.error = 0

    def add(self, value, count=1):
        """Count ``value`` ``count`` more times."""
        self.total += count
        counts = self.counts
        if value in counts:
            counts[value] += count
        elif len(counts) < self.capacity:
            counts[value] = count
        else:
            # Misra-Gries: take the same amount off every counter and the
            # newcomer, dropping the counters that reach zero.
            cut = min(count, min(counts.values()))
            self.error += cut
            for key in list(counts):
                left = counts[key] - cut
                if left > 0:
                    counts[key] = left
                else:
                    del counts[key]
            if count > cut:
                counts[value] = count - cut

    @property
    def exact(self):
        """Whether every count is exact."""
        return self.error == 0

    def top(self, n=None):
        """``[(value, count), ...]``: the ``n`` (default all) largest counts,
        largest first, equal counts by value."""
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], str(item[0])))
        return ranked if n is None else ranked[:n]

    def other(self, n=None):
        """How many of the values added are not among `top(n)`'s counts."""
        return self.total - sum(count for _, count in self.top(n))

    def merge(self, other):
        """Add ``other``'s counts; the result keeps the same guarantees for both streams."""
        counts = self.counts
        for value, count in other.counts.items():
            counts[value] = counts.get(value, 0) + count
        self.total += other.total
        self.error += other.error
        if len(counts) > self.capacity:
            cut = sorted(counts.values(), reverse=True)[self.capacity]
            self.error += cut
            self.counts = {v: c - cut for v, c in counts.items() if c > cut}

    def to_dict(self):
        """The counter as JSON-ready values; `from_dict` reads it back."""
        return {
            "capacity": self.capacity,
            "total": self.total,
            "error": self.error,
            "counts": [[value, count] for value, count in self.top()],
        }

    @classmethod
    def from_dict(cls, data):
        """A counter from `to_dict`'s values; raises `ValueError` for anything else."""
        try:
            counter = cls(data["capacity"])
            counter.total, counter.error = data["total"], data["error"]
            for value, count in data["counts"]:
                if not _whole(count) or count < 1 or value in counter.counts:
                    raise ValueError(f"bad count for {value!r}: {count!r}")
                counter.counts[value] = count
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a top counter: {e}") from None
        if len(counter.counts) > counter.capacity or sum(counter.counts.values()) > counter.total:
            raise ValueError("not a top counter: more counted than its capacity or total")
        return counter

    def __repr__(self):
        return f"<TopCounter total={self.total} kept={len(self.counts)} error={self.error}>"
