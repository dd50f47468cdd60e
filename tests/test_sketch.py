"""Tests for blueox.sketch: quantiles within the stated accuracy, exact merges, bounded memory."""

import json
import math
import random

from twisted.trial.unittest import SynchronousTestCase

from blueox.sketch import QuantileSketch, TopCounter

QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)

# Floating-point rounding at a bucket's edge may add this much to the bound.
SLACK = 1e-9


def exact_quantile(ordered, q):
    """The value of rank floor(q * (n - 1)) of sorted values, as the sketch defines it."""
    return ordered[int(q * (len(ordered) - 1))]


def sketch_of(values, **kwargs):
    sketch = QuantileSketch(**kwargs)
    for value in values:
        sketch.add(value)
    return sketch


class QuantileAccuracyTests(SynchronousTestCase):
    def assertWithinAccuracy(self, sketch, values, accuracy=0.01):
        ordered = sorted(values)
        for q in QUANTILES:
            want = exact_quantile(ordered, q)
            got = sketch.quantile(q)
            self.assertLessEqual(
                abs(got - want), (accuracy + SLACK) * abs(want), f"q={q}: {got} for {want}"
            )

    def test_uniform(self):
        """Quantiles of 100,000 uniform values are within 1% of the exact ones."""
        rng = random.Random(1)
        values = [rng.uniform(0.001, 10.0) for _ in range(100_000)]
        self.assertWithinAccuracy(sketch_of(values), values)

    def test_exponential(self):
        """Quantiles of an exponential distribution (a latency's long tail) are within 1%."""
        rng = random.Random(2)
        values = [rng.expovariate(1 / 0.05) for _ in range(100_000)]
        self.assertWithinAccuracy(sketch_of(values), values)

    def test_other_accuracy(self):
        """A sketch made for 5% stays within 5%, and uses fewer buckets than one for 1%."""
        rng = random.Random(3)
        values = [rng.lognormvariate(0, 2) for _ in range(50_000)]
        coarse = sketch_of(values, relative_accuracy=0.05)
        self.assertWithinAccuracy(coarse, values, accuracy=0.05)
        self.assertLess(coarse.bucket_count, sketch_of(values).bucket_count / 3)

    def test_constant(self):
        """A constant stream gives that constant, exactly, at every quantile."""
        sketch = sketch_of([0.123] * 1000)
        for q in QUANTILES:
            self.assertEqual(sketch.quantile(q), 0.123)
        self.assertEqual((sketch.min, sketch.max, sketch.count), (0.123, 0.123, 1000))

    def test_huge_and_tiny(self):
        """Values near the largest and smallest floats keep the accuracy; subnormals count as zero."""
        values = [1e300, 3e299, 1.7e308, 1e-300, 5e-301, 2.2250738585072014e-308]
        sketch = sketch_of(values, max_buckets=100_000)
        self.assertWithinAccuracy(sketch, values)
        self.assertFalse(sketch.collapsed)
        tiny = sketch_of([5e-324, 1e-320, 0.0, 1.0])
        self.assertEqual(tiny.zero_count, 3)
        self.assertEqual(tiny.quantile(0.5), 0.0)

    def test_negative_and_zero(self):
        """Negative values and zeros are placed in order, each within the accuracy."""
        rng = random.Random(4)
        values = [rng.uniform(-100, 100) for _ in range(20_000)] + [0.0] * 5000
        sketch = sketch_of(values)
        ordered = sorted(values)
        for q in QUANTILES:
            want = exact_quantile(ordered, q)
            self.assertLessEqual(abs(sketch.quantile(q) - want), (0.01 + SLACK) * abs(want), q)
        self.assertEqual(sketch.zero_count, 5000)

    def test_exact_statistics(self):
        """count, sum, min, max and mean are exact; quantile(0) and quantile(1) are min and max."""
        values = [3, -2.5, 7.25, 0, 11]
        sketch = sketch_of(values)
        self.assertEqual(
            (sketch.count, sketch.sum, sketch.min, sketch.max, sketch.mean),
            (5, 18.75, -2.5, 11.0, 3.75),
        )
        self.assertEqual((sketch.quantile(0), sketch.quantile(1)), (-2.5, 11.0))

    def test_small_whole_numbers_exact(self):
        """When every value is a whole number, small quantiles come out exact (10, not 9.95)."""
        values = [n % 40 for n in range(4000)]
        sketch = sketch_of(values)
        ordered = sorted(values)
        for q in QUANTILES:
            self.assertEqual(sketch.quantile(q), exact_quantile(ordered, q), q)
        fractional = sketch_of([10, 10.5, 10, 10])
        self.assertFalse(fractional.integers)

    def test_empty(self):
        """An empty sketch has no quantiles, min, max or mean."""
        sketch = QuantileSketch()
        self.assertEqual((sketch.quantile(0.5), sketch.min, sketch.max, sketch.mean), (None,) * 4)

    def test_bad_values_refused(self):
        """Infinity, NaN, integers too large for a float and bad quantiles raise ValueError."""
        sketch = QuantileSketch()
        for value in (math.inf, -math.inf, math.nan, 10**400):
            self.assertRaises(ValueError, sketch.add, value)
        self.assertRaises(TypeError, sketch.add, "1")
        self.assertEqual(sketch.count, 0)
        sketch.add(1)
        self.assertRaises(ValueError, sketch.quantile, 1.5)
        self.assertRaises(ValueError, QuantileSketch, 0)
        self.assertRaises(ValueError, QuantileSketch, 0.01, 0)


class QuantileMemoryTests(SynchronousTestCase):
    def test_million_values_of_a_wide_range(self):
        """10^6 values from 1e-300 to 1e300, both signs, stay within the bucket cap and the top keeps its accuracy."""
        rng = random.Random(5)
        values = [rng.choice((-1, 1)) * 10 ** rng.uniform(-300, 300) for _ in range(1_000_000)]
        sketch = sketch_of(values, max_buckets=1000)
        self.assertLessEqual(sketch.bucket_count, 2000)
        self.assertLessEqual(len(sketch._positive.counts), 1000)
        self.assertTrue(sketch.collapsed)
        self.assertEqual(sketch.count, 1_000_000)
        ordered = sorted(values)
        # 1000 buckets at 1% span magnitudes 10^8.7 apart: from 10^291.3 to
        # 10^300, the top 1.5% of each sign, nothing is folded.
        for q in (0.0005, 0.001, 0.005, 0.995, 0.999, 0.9995):
            want = exact_quantile(ordered, q)
            self.assertLessEqual(abs(sketch.quantile(q) - want), (0.01 + SLACK) * abs(want), q)

    def test_default_cap(self):
        """With the defaults, values from a nanosecond to a day use a few thousand buckets at most and fold nothing."""
        rng = random.Random(6)
        sketch = sketch_of(10 ** rng.uniform(-9, 5) for _ in range(100_000))
        self.assertLessEqual(sketch.bucket_count, 2048)
        self.assertFalse(sketch.collapsed)


class QuantileMergeTests(SynchronousTestCase):
    def test_merge_equals_union(self):
        """Merging the sketches of two streams gives the sketch of both, bucket for bucket."""
        rng = random.Random(7)
        a = [rng.expovariate(10) for _ in range(30_000)] + [0.0, -3.5]
        b = [rng.uniform(-1, 50) for _ in range(20_000)]
        merged = sketch_of(a)
        merged.merge(sketch_of(b))
        union = sketch_of(a + b)
        got, want = merged.to_dict(), union.to_dict()
        self.assertAlmostEqual(got.pop("sum"), want.pop("sum"), places=6)
        self.assertEqual(got, want)
        for q in QUANTILES:
            self.assertEqual(merged.quantile(q), union.quantile(q))

    def test_merge_equals_union_when_collapsed(self):
        """With folded buckets, a merge still equals the sketch of the union, in any order."""
        rng = random.Random(8)
        values = [10 ** rng.uniform(-50, 50) for _ in range(20_000)]
        parts = [values[i::3] for i in range(3)]
        merged = sketch_of(parts[2], max_buckets=200)
        merged.merge(sketch_of(parts[0], max_buckets=200))
        merged.merge(sketch_of(parts[1], max_buckets=200))
        union = sketch_of(sorted(values, reverse=True), max_buckets=200)
        self.assertTrue(union.collapsed)
        got, want = merged.to_dict(), union.to_dict()
        self.assertAlmostEqual(got.pop("sum") / want.pop("sum"), 1.0)
        self.assertEqual(got, want)

    def test_merge_empty(self):
        """Merging an empty sketch changes nothing; merging into an empty one copies."""
        full = sketch_of([1, 2, 3])
        full.merge(QuantileSketch())
        self.assertEqual((full.count, full.min, full.max), (3, 1, 3))
        empty = QuantileSketch()
        empty.merge(full)
        self.assertEqual(empty.to_dict(), full.to_dict())

    def test_merge_needs_same_accuracy(self):
        """Sketches of different relative accuracy cannot be merged."""
        self.assertRaises(ValueError, QuantileSketch(0.01).merge, QuantileSketch(0.02))


class QuantileJsonTests(SynchronousTestCase):
    def test_round_trip(self):
        """to_dict goes through JSON and from_dict gives back the same sketch."""
        rng = random.Random(9)
        sketch = sketch_of([rng.uniform(-5, 5) for _ in range(5000)] + [0, 0])
        copy = QuantileSketch.from_dict(json.loads(json.dumps(sketch.to_dict())))
        self.assertEqual(copy.to_dict(), sketch.to_dict())
        for q in QUANTILES:
            self.assertEqual(copy.quantile(q), sketch.quantile(q))
        empty = QuantileSketch.from_dict(QuantileSketch().to_dict())
        self.assertEqual(empty.count, 0)

    def test_bad_dicts_refused(self):
        """Data that is not a sketch, or whose counts do not add up, raises ValueError."""
        good = sketch_of([1.0, 2.0]).to_dict()
        bad = [
            {},
            dict(good, count=3),
            dict(good, positive=[[0, -1]]),
            dict(good, positive=[["x", 1]]),
            dict(good, min=None),
            dict(good, relative_accuracy=2),
            dict(good, negative=None),
        ]
        for data in bad:
            self.assertRaises(ValueError, QuantileSketch.from_dict, data)


class TopCounterTests(SynchronousTestCase):
    def test_exact_under_capacity(self):
        """With no more distinct values than counters, counts are exact and nothing is 'other'."""
        counter = TopCounter(capacity=10)
        for value in "abracadabra":
            counter.add(value)
        self.assertEqual(counter.top(), [("a", 5), ("b", 2), ("r", 2), ("c", 1), ("d", 1)])
        self.assertEqual((counter.total, counter.other(), counter.other(2)), (11, 0, 4))
        self.assertTrue(counter.exact)

    def test_heavy_values_kept_in_bounded_memory(self):
        """Past its capacity it holds at most that many values, keeps the frequent ones,
        and each count is low by at most error <= total / (capacity + 1)."""
        rng = random.Random(10)
        stream = ["/home"] * 20_000 + ["/login"] * 8000 + [f"/item/{n}" for n in range(50_000)]
        rng.shuffle(stream)
        counter = TopCounter(capacity=50)
        for value in stream:
            counter.add(value)
            self.assertLessEqual(len(counter.counts), 50)
        top = dict(counter.top(2))
        self.assertEqual(list(top), ["/home", "/login"])
        self.assertLessEqual(counter.error, len(stream) / 51)
        self.assertGreaterEqual(top["/home"], 20_000 - counter.error)
        self.assertLessEqual(top["/home"], 20_000)
        self.assertEqual(counter.other(2), len(stream) - sum(top.values()))
        self.assertFalse(counter.exact)

    def test_weighted_add(self):
        """add(value, count) counts a value several times at once."""
        counter = TopCounter(capacity=2)
        counter.add("a", 5)
        counter.add("b", 1)
        counter.add("c", 3)
        self.assertEqual(counter.top(), [("a", 4), ("c", 2)])
        self.assertEqual((counter.total, counter.error), (9, 1))

    def test_merge(self):
        """Merged counters count both streams: exact when they fit, bounded and keeping heavy values when not."""
        a, b = TopCounter(10), TopCounter(10)
        for value in "aaab":
            a.add(value)
        for value in "abbc":
            b.add(value)
        a.merge(b)
        self.assertEqual(a.top(), [("a", 4), ("b", 3), ("c", 1)])
        small, other = TopCounter(3), TopCounter(3)
        for value in ["x"] * 100 + list("pqr"):
            small.add(value)
        for value in ["x"] * 50 + ["y"] * 40 + list("stu"):
            other.add(value)
        small.merge(other)
        self.assertLessEqual(len(small.counts), 3)
        self.assertEqual([v for v, _ in small.top(2)], ["x", "y"])
        self.assertEqual(small.total, 196)
        self.assertLessEqual(small.error, small.total / 4)

    def test_round_trip(self):
        """to_dict goes through JSON and from_dict gives back the same counts."""
        counter = TopCounter(5)
        for n in range(100):
            counter.add(str(n % 7))
        copy = TopCounter.from_dict(json.loads(json.dumps(counter.to_dict())))
        self.assertEqual(copy.to_dict(), counter.to_dict())
        self.assertRaises(ValueError, TopCounter.from_dict, {"capacity": 1})
        self.assertRaises(
            ValueError, TopCounter.from_dict,
            {"capacity": 1, "total": 5, "error": 0, "counts": [["a", 3], ["b", 2]]},
        )
        self.assertRaises(ValueError, TopCounter, 0)
