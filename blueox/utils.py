"""Dotted-key helpers used by `Context` values (kept from BlueOx 0.11).

``'a.b.0'`` names ``target['a']['b'][0]``: parts that look like integers
index lists when reading.
"""

__all__ = ["ParsedKey", "parse_key", "get_deep", "set_deep"]


def _part(part):
    # int() would accept more (spaces, underscores), but raising and
    # catching its ValueError for every word costs more than the set itself.
    digits = part[1:] if part[:1] == "-" else part
    return int(part) if digits.isdigit() and digits.isascii() else part


# Applications use a handful of dotted keys, over and over: split each once.
# The caches are bounded, since a key may be built from data.
_CACHE_SIZE = 1024
_parts_cache = {}
_set_paths = {}


def _remember(cache, key, value):
    """Keep ``value`` under ``key`` in ``cache`` (emptied when full); return it."""
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def _parts(key):
    """The parts of a dotted key, as a tuple; integer-looking parts become ints."""
    if "." not in key:
        return (key,)
    try:
        return _parts_cache[key]
    except KeyError:
        pass
    return _remember(_parts_cache, key, tuple([_part(part) for part in key.split(".")]))


def _set_path(key):
    """``(parents, last)`` for `set_deep`, or None if a parent is an integer."""
    try:
        return _set_paths[key]
    except KeyError:
        pass
    parts = _parts(key)
    for elem in parts[:-1]:
        if isinstance(elem, int):
            return None
    return _remember(_set_paths, key, (parts[:-1], parts[-1]))


class ParsedKey:
    """A dotted key split into its parts; integer-looking parts become ints."""

    def __init__(self, value):
        self.elems = list(_parts(value))

    def __getitem__(self, key):
        if isinstance(key, slice):
            usable = self.elems[key]
            if usable:
                return ParsedKey(".".join(str(v) for v in usable))
            return []
        return self.elems[key]

    def __len__(self):
        return len(self.elems)

    def __iter__(self):
        return iter(self.elems)

    def __str__(self):
        return ".".join(str(v) for v in self.elems)

    def __repr__(self):
        return f"ParsedKey({str(self)!r})"


def parse_key(key):
    """Split a dotted key into a `ParsedKey`."""
    return ParsedKey(key)


def get_deep(target, key, default=None):
    """Return the value at a dotted key, or ``default`` when any part is missing."""
    value = target
    for elem in _parts(key):
        try:
            value = value[elem]
        except (KeyError, IndexError, TypeError):
            return default
    return value


def set_deep(target, key, value):
    """Set the value at a dotted key, creating nested dicts on the way.

    An integer part before the last raises `ValueError`: lists are not
    created implicitly.
    """
    path = _set_path(key)
    node = target
    if path is None:
        for elem in _parts(key):
            if isinstance(elem, int):
                raise ValueError(elem)
            node = node.setdefault(elem, {})
    parents, last = path
    for elem in parents:
        node = node.setdefault(elem, {})
    node[last] = value
