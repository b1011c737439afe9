"""What the fuzz tests (tests/test_*_fuzz.py) share: their Hypothesis settings, random
documents, structural mutations of a real document, byte-level damage to its bytes, nesting,
alias bombs and huge values. Each test module passes what is its own: its keys and odd values,
the document and bytes it starts from, the chunks it inserts."""
import os

from hypothesis import HealthCheck, settings, strategies as st

MUTATIONS = ("delete", "replace", "replace", "duplicate", "rename", "wrap")


def fuzz_settings(ci_examples: int, dev_examples: int, *suppress: HealthCheck) -> settings:
    """``ci_examples`` per test with CI=1 (.ci/run sets it), derandomized: the same seeded
    variants on every run, so a failure reproduces."""
    return settings(max_examples=ci_examples if os.environ.get("CI") else dev_examples,
                    deadline=None, derandomize=True, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           *suppress])


def assert_enough_variants(namespace: dict, fuzz: settings, at_least: int) -> None:
    """The module's fuzz tests run 500 variants in all in CI, and none was lost."""
    tests = [v for k, v in namespace.items() if k.startswith("test_") and hasattr(v, "hypothesis")]
    if os.environ.get("CI"):
        assert len(tests) * fuzz.max_examples >= 500
    assert len(tests) >= at_least


def assert_named(e, source: str) -> None:
    """A rejection whose every problem (of the first 100 shown) names ``source:LINE``, in a
    message of bounded length."""
    msg = str(e)
    assert msg.startswith(f"{source}: ") and e.problems
    assert len(msg) < 101 * 1000, len(msg)  # at most 100 problems shown, each a line or two
    for p in e.problems[:100]:
        assert isinstance(p.line, int) and p.line >= 1 and p.message, msg[:2000]
        shown = p.render(source)
        assert shown in msg and len(shown) < 1000, p
        assert shown.startswith(f"{source}:{p.line}:")


# --------------------------------------------------------------------------- random documents

def documents(scalars, keys: list, max_size: int, max_leaves: int):
    """Nested lists and mappings (keys from ``keys``) of ``scalars``."""
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(keys), inner, max_size=max_size)), max_leaves=max_leaves)


# --------------------------------------------------------------------------- structural mutations

def paths(node, prefix=()):
    """Every path into the document (keys and list indexes)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


def copy(node):
    if isinstance(node, dict):
        return {k: copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [copy(v) for v in node]
    return node


def mutations(doc, values, keys: list, ops=MUTATIONS):
    """One to four (path into ``doc``, op, new value, new key) for :func:`mutated`."""
    return st.lists(st.tuples(st.sampled_from([p for p in paths(doc) if p]), st.sampled_from(ops),
                              values, st.sampled_from(keys)), min_size=1, max_size=4)


def mutate(doc, path, op, value, key) -> None:
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = value
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy(parent[last]))
    elif op == "duplicate" and isinstance(parent, dict):
        parent[key] = copy(parent[last])
    elif op == "rename" and isinstance(parent, dict):
        parent[key] = parent.pop(last)
    elif op == "wrap":
        parent[last] = [parent[last]]


def mutated(doc, changes):
    """A copy of ``doc`` with ``changes`` (drawn from :func:`mutations`) made."""
    doc = copy(doc)
    for path, op, value, key in changes:
        try:
            mutate(doc, path, op, value, key)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or changed what this path pointed into
    return doc


# --------------------------------------------------------------------------- byte-level damage

def damage(data: bytes, chunks: list):
    """One to five edits (position, op, bytes) of ``data`` for :func:`damaged`: random bytes
    or one of ``chunks`` (what the format reads as syntax or refuses)."""
    return st.lists(st.tuples(st.integers(0, len(data)),
                              st.sampled_from(["flip", "insert", "delete", "truncate"]),
                              st.binary(min_size=1, max_size=4) | st.sampled_from(chunks)),
                    min_size=1, max_size=5)


def damaged(data: bytes, edits) -> bytes:
    data = bytearray(data)
    for pos, op, chunk in edits:
        pos = min(pos, len(data))
        if op == "flip" and pos < len(data):
            data[pos] ^= chunk[0] or 0x80
        elif op == "insert":
            data[pos:pos] = chunk
        elif op == "delete":
            del data[pos:pos + len(chunk)]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


# --------------------------------------------------------------------------- bombs and huge values

def nested(opener: str, depth: int, closed: bool, leaf: str) -> str:
    """``leaf`` inside ``depth`` openers (``[``, ``{a: ``, ``- ``...), closed or left open."""
    closer = "".join({"[": "]", "{": "}"}[c] for c in reversed(opener) if c in "[{")
    return opener * depth + leaf + (closer * depth if closed else "")


def alias_bomb(levels: int, fanout: int, kind: str) -> tuple:
    """YAML lines of anchors, each ``fanout`` references to the one before (as a list or merge
    keys), and the reference to the last: it expands to ``fanout ** levels`` nodes."""
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: {i}" for i in range(fanout)) + "}"]
    for n in range(1, levels):
        refs = ", ".join([f"*a{n - 1}"] * fanout)
        lines.append(f"a{n}: &a{n} [{refs}]" if kind == "list" else f"a{n}: &a{n}\n  <<: [{refs}]")
    return lines, f"*a{levels - 1}"


def huge(kind: str, magnitude: int, *, digits=20_000, chars=None, items=20_000, sep=", ") -> str:
    """A value of about ``10 ** magnitude`` (digits, characters or items, each capped)."""
    size = 10 ** magnitude
    return {"digits": lambda: "9" * min(size, digits),
            "hex": lambda: "0x" + "f" * min(size, digits),
            "string": lambda: '"' + "x" * min(size, chars or size) + '"',
            "list": lambda: "[" + sep.join(["1"] * min(size, items)) + "]",
            "float": lambda: "1e" + "9" * magnitude}[kind]()
