"""Pair graphs for pairwise reconstruction models (DUSt3R / MASt3R) and their connectivity.

Graph names follow DUSt3R's ``make_pairs``; every pair is used in both orders (symmetrised), so for
``n`` views the edge list holds ``(i, j)`` and ``(j, i)``:

- ``complete``: every unordered pair.
- ``swin-K``: each view with the next ``K`` views, wrapping around (cyclic; ``swin-K-noncyclic`` does
  not wrap).
- ``logwin-K``: each view with the views at offsets ``±1, ±2, ±4, ..., ±2**(K-1)``, wrapping around
  (``logwin-K-noncyclic`` does not wrap).
- ``oneref-I``: view ``I`` (0-based) with every other view.
"""

from __future__ import annotations

import re

from tune3d.errors import Tune3DError

GRAPH_HELP = "complete | swin-K | logwin-K | oneref-I (add -noncyclic to swin/logwin to stop wrapping)"
_PATTERN = re.compile(r"^(complete|swin-(\d+)(-noncyclic)?|logwin-(\d+)(-noncyclic)?|oneref-(\d+))$")


def parse_graph(graph: str) -> tuple[str, int, bool]:
    """``graph`` -> (kind, K or I, cyclic); a malformed name is a user error."""
    m = _PATTERN.match(graph.strip())
    if m is None:
        raise Tune3DError(f"--graph {graph!r}: expected {GRAPH_HELP}")
    if m.group(1) == "complete":
        return "complete", 0, True
    if m.group(2) is not None:
        k, cyclic, kind = int(m.group(2)), m.group(3) is None, "swin"
    elif m.group(4) is not None:
        k, cyclic, kind = int(m.group(4)), m.group(5) is None, "logwin"
    else:
        return "oneref", int(m.group(6)), True
    if k < 1:
        raise Tune3DError(f"--graph {graph!r}: the window size must be at least 1")
    return kind, k, cyclic


def make_pairs(n: int, graph: str = "complete", symmetrize: bool = True) -> list[tuple[int, int]]:
    """Edges ``(i, j)`` of the pair graph ``graph`` over ``n`` views (see the module docstring).

    Unordered pairs come first as ``(min, max)`` in sorted order, then (``symmetrize``) their reverses.
    """
    kind, k, cyclic = parse_graph(graph)
    if n < 2:
        raise Tune3DError(f"pair graph needs at least two views, got {n}")
    pairs: set[tuple[int, int]] = set()
    if kind == "complete":
        pairs = {(i, j) for i in range(n) for j in range(i + 1, n)}
    elif kind in ("swin", "logwin"):
        offsets = range(1, k + 1) if kind == "swin" else [2**p for p in range(k)]
        for i in range(n):
            for off in offsets:
                for j in (i + off, i - off) if kind == "logwin" else (i + off,):
                    if cyclic:
                        j %= n
                    if 0 <= j < n and j != i:
                        pairs.add((min(i, j), max(i, j)))
    else:
        if not 0 <= k < n:
            raise Tune3DError(f"--graph oneref-{k}: reference view {k} is out of range for {n} views")
        pairs = {(min(k, j), max(k, j)) for j in range(n) if j != k}
    edges = sorted(pairs)
    if symmetrize:
        edges += [(j, i) for i, j in edges]
    return edges


class DisjointSets:
    """Union-find over the views ``0..n-1`` (path halving)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        """The representative of ``a``'s set."""
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: int, b: int) -> bool:
        """Join the sets of ``a`` and ``b``; False when they were one set already."""
        ra, rb = self.find(a), self.find(b)
        self.parent[ra] = rb
        return ra != rb


def connected_components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (sorted view indices) of the undirected graph ``edges`` on ``n`` views."""
    sets = DisjointSets(n)
    for i, j in edges:
        sets.union(i, j)
    groups: dict[int, list[int]] = {}
    for v in range(n):
        groups.setdefault(sets.find(v), []).append(v)
    return sorted(groups.values())


def check_connected(n: int, edges: list[tuple[int, int]], what: str = "pair graph") -> None:
    """Raise a one-line user error when ``edges`` do not connect all ``n`` views."""
    comps = connected_components(n, edges)
    if len(comps) > 1:
        shown = "; ".join(
            str(c) if len(c) <= 6 else f"[{c[0]}, ..., {c[-1]}] ({len(c)} views)" for c in comps
        )
        raise Tune3DError(
            f"{what} is disconnected ({len(comps)} components: {shown}); "
            "global alignment needs every view linked"
        )
