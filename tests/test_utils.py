"""Tests for blueox.utils: dotted keys read and written as in BlueOx 0.11."""

from twisted.trial.unittest import SynchronousTestCase

from blueox import utils
from blueox.utils import get_deep, parse_key, set_deep


class ParseKeyTests(SynchronousTestCase):
    def test_dotted_key_parts(self):
        """A dotted key splits on '.' into its parts, in order."""
        self.assertEqual(list(parse_key("a.b.c")), ["a", "b", "c"])

    def test_integer_parts_become_ints(self):
        """Parts made of ASCII digits, optionally negative, become ints; others stay str."""
        self.assertEqual(list(parse_key("a.0.12.-3.b")), ["a", 0, 12, -3, "b"])
        self.assertEqual(list(parse_key("a.-.1x.x1")), ["a", "-", "1x", "x1"])

    def test_only_plain_ascii_digits_are_integers(self):
        """Parts int() would also take (spaces, '+', '_', non-ASCII digits) stay strings."""
        self.assertEqual(list(parse_key("a. 1.+2.1_0.\u0661")), ["a", " 1", "+2", "1_0", "\u0661"])

    def test_single_part_stays_a_string(self):
        """A key without a '.' is one str part, even when it looks like an integer (as in 0.11)."""
        self.assertEqual(list(parse_key("5")), ["5"])
        self.assertEqual(list(parse_key("name")), ["name"])

    def test_empty_parts_are_kept(self):
        """Empty parts around stray dots are kept as empty strings."""
        self.assertEqual(list(parse_key("a..b.")), ["a", "", "b", ""])

    def test_sequence_protocol(self):
        """A parsed key has a length, indexes its parts and prints as the dotted key."""
        key = parse_key("a.1.b")
        self.assertIsInstance(key, utils.ParsedKey)
        self.assertEqual(len(key), 3)
        self.assertEqual((key[0], key[1], key[-1]), ("a", 1, "b"))
        self.assertEqual(str(key), "a.1.b")
        self.assertEqual(repr(key), "ParsedKey('a.1.b')")

    def test_slices(self):
        """A slice is a ParsedKey of those parts, or [] when it is empty."""
        key = parse_key("a.b.c")
        self.assertEqual(list(key[:-1]), ["a", "b"])
        self.assertIsInstance(key[:-1], utils.ParsedKey)
        self.assertEqual(list(key[1:]), ["b", "c"])
        self.assertEqual(parse_key("a")[:-1], [])


class GetDeepTests(SynchronousTestCase):
    def setUp(self):
        self.target = {
            "a": {"b": {"c": 1}},
            "list": [10, {"x": "y"}, [7, 8]],
            "zero": 0,
            "none": None,
            "5": "five",
        }

    def test_top_level_key(self):
        """A key without dots reads the top-level value, including falsy values."""
        self.assertEqual(get_deep(self.target, "zero", "d"), 0)
        self.assertIsNone(get_deep(self.target, "none", "d"))
        self.assertEqual(get_deep(self.target, "5"), "five")

    def test_dotted_key(self):
        """A dotted key walks nested dicts."""
        self.assertEqual(get_deep(self.target, "a.b.c"), 1)
        self.assertEqual(get_deep(self.target, "a.b"), {"c": 1})

    def test_integer_parts_index_lists(self):
        """Integer parts index lists, including negative ones and lists in lists."""
        self.assertEqual(get_deep(self.target, "list.0"), 10)
        self.assertEqual(get_deep(self.target, "list.1.x"), "y")
        self.assertEqual(get_deep(self.target, "list.2.1"), 8)
        self.assertEqual(get_deep(self.target, "list.-1.0"), 7)

    def test_integer_parts_read_integer_dict_keys(self):
        """An integer part reads an int key of a dict, as set_deep writes it."""
        self.assertEqual(get_deep({"a": {1: "one"}}, "a.1"), "one")

    def test_missing_key_returns_default(self):
        """A missing key at any depth returns the default, None unless given."""
        self.assertIsNone(get_deep(self.target, "nope"))
        self.assertIsNone(get_deep(self.target, "a.nope.c"))
        self.assertEqual(get_deep(self.target, "a.b.nope", "d"), "d")
        self.assertEqual(get_deep({}, "a", default=3), 3)

    def test_out_of_range_index_returns_default(self):
        """An index past either end of a list returns the default."""
        self.assertEqual(get_deep(self.target, "list.3", "d"), "d")
        self.assertEqual(get_deep(self.target, "list.-4", "d"), "d")
        self.assertEqual(get_deep(self.target, "list.2.5", "d"), "d")

    def test_wrong_container_returns_default(self):
        """Indexing into a value that cannot be indexed that way returns the default."""
        self.assertEqual(get_deep(self.target, "zero.x", "d"), "d")
        self.assertEqual(get_deep(self.target, "none.0", "d"), "d")
        self.assertEqual(get_deep(self.target, "list.x", "d"), "d")
        self.assertEqual(get_deep(self.target, "a.b.c.d", "d"), "d")


class SetDeepTests(SynchronousTestCase):
    def test_top_level(self):
        """A key without dots sets a top-level str key, even if it looks like an integer."""
        target = {}
        set_deep(target, "a", 1)
        set_deep(target, "5", 2)
        self.assertEqual(target, {"a": 1, "5": 2})

    def test_creates_nested_dicts(self):
        """Missing dicts along a dotted key are created."""
        target = {}
        set_deep(target, "a.b.c", 1)
        self.assertEqual(target, {"a": {"b": {"c": 1}}})

    def test_keeps_existing_siblings(self):
        """Setting beside existing nested values keeps them and overwrites only the last part."""
        target = {"a": {"b": {"c": 1}, "keep": True}}
        set_deep(target, "a.b.d", 2)
        set_deep(target, "a.b.c", 3)
        self.assertEqual(target, {"a": {"b": {"c": 3, "d": 2}, "keep": True}})

    def test_last_integer_part_is_an_int_key(self):
        """An integer last part becomes an int key (or list index) that get_deep reads back."""
        target = {}
        set_deep(target, "a.0", "x")
        self.assertEqual(target, {"a": {0: "x"}})
        self.assertEqual(get_deep(target, "a.0"), "x")
        target = {"l": [1, 2]}
        set_deep(target, "l.1", "two")
        self.assertEqual(target, {"l": [1, "two"]})

    def test_integer_part_before_last_raises(self):
        """An integer part before the last raises ValueError: lists are never created."""
        target = {}
        self.assertRaises(ValueError, set_deep, target, "a.0.b", 1)
        self.assertRaises(ValueError, set_deep, target, "1.b", 1)
        self.assertRaises(ValueError, set_deep, target, "a.-2.b", 1)
        # "a" was created before the integer part was reached, as in 0.11.
        self.assertEqual(target, {"a": {}})

    def test_set_then_get(self):
        """Values set at several dotted keys are read back by get_deep."""
        target = {}
        keys = ["x", "a.b", "a.c.d", "a.c.e", "q.r.s.t"]
        for i, key in enumerate(keys):
            set_deep(target, key, i)
        self.assertEqual([get_deep(target, key) for key in keys], list(range(len(keys))))


class KeyCacheTests(SynchronousTestCase):
    def test_caches_stay_bounded(self):
        """Keys built from data (a new key every time) never grow the key caches past their size."""
        target = {}
        for n in range(3 * utils._CACHE_SIZE):
            set_deep(target, f"user.{n}x.visits", n)
            self.assertEqual(get_deep(target, f"user.{n}x.visits"), n)
        self.assertLessEqual(len(utils._parts_cache), utils._CACHE_SIZE)
        self.assertLessEqual(len(utils._set_paths), utils._CACHE_SIZE)
        self.assertEqual(len(target["user"]), 3 * utils._CACHE_SIZE)
