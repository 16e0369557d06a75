#!/usr/bin/env python3
"""Structure checks for the workspace's crates (python3 stdlib only).

1. No import cycles between modules. For every crate in the workspace `Cargo.toml`
   `members`, and every crate root in it (`src/lib.rs`, `src/main.rs`, `src/bin/*`), the
   module tree is followed from the root's `mod` declarations, and an edge A -> B is drawn
   when non-test code in A names B through a `use crate::...` / `crate::b::...` path or a
   `super::` path. Nodes are file modules: an inline `mod x { }` counts as part of its file,
   and a path `a::b::Item` names the deepest module it reaches (`a::b` when a/b.rs exists,
   else `a`). Any cycle fails the check and is printed with the lines that make it.
2. No non-test function longer than MAX_FN_LINES lines, unless ALLOWLIST names it with the
   reason it may be long (a flat table or a builder: length without branching).
3. Layer rules (LAYERS): in a crate whose `src/` is one folder per layer, each layer's non-test
   code imports only the top-level modules its entry allows (an edge to the crate root, i.e.
   a root re-export, counts as a violation: name the module). Each violation is printed with
   the line that makes it.
4. Test placement (ONE_TESTS_FILE crates): unit tests only as `#[cfg(test)] mod tests;` (the
   file `x/tests.rs`): no inline `mod tests { }` and no `#[path]` test file, so each module
   has its tests in exactly one place.

Test code is skipped: items under `#[cfg(test)]` (and `#[test]` functions), files whose
only way in is such a module, and every `tests/`, `benches/`, `examples/` target.

    scripts/check-structure.py             check; exit 1 on a cycle or an unlisted long fn
    scripts/check-structure.py --report    print what the check finds; always exit 0
    scripts/check-structure.py --self-test check the checker on synthetic trees
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# A function longer than this many lines (from its `fn` line to its closing brace) fails.
MAX_FN_LINES = 80

# Long functions that may stay long: "<path to file>::<fn>" (methods: "<file>::<Type>::<fn>")
# -> why (a flat table or a builder, not branching logic). Keep the reason specific; remove an
# entry when its function is cut.
ALLOWLIST: dict[str, str] = {
    "operator/src/metrics.rs::Metrics::new": (
        "flat table: one registry.register per metric, no branching"
    ),
    "sidecar/src/metrics.rs::Metrics::new": (
        "flat table: one registry.register per metric, no branching"
    ),
}


# The layers of crates whose `src/` folders are layers: "<crate dir>/src" -> {top-level module
# -> the top-level modules of the same crate it may import}. A top-level module not listed
# is not a layer (no rule); a listed one imports nothing of ours beyond its set. (The
# broadcaster's `lib.rs` and README draw the same picture.)
LAYERS: dict[str, dict[str, set[str]]] = {
    "broadcaster/src": {
        "generated": set(),
        "util": set(),
        "gtfs": {"generated"},
        "pipeline": {"gtfs", "generated", "util"},
        "serve": {"pipeline", "gtfs", "generated", "util"},
        "client": {"generated", "util"},
    },
}

# Crates (their `src/`) whose unit tests all follow CONTRIBUTING.md's one convention.
ONE_TESTS_FILE: list[str] = [
    "broadcaster/src",
    "broadcaster/lean-h2/src",
    "core/src",
    "crds/src",
    "operator/src",
    "sidecar/src",
    "tests/testkit/src",
    "tests/envtest/src",
    "tests/src",
]

INLINE_TESTS_RE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+tests\s*\{", re.M)
PATH_ATTR_RE = re.compile(r"^\s*#\[path\s*=", re.M)


# ---------------------------------------------------------------------------------------
# Lexing: Rust source to (kind, text, line) tokens without comments or literal contents.

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RAW_STR_RE = re.compile(r'(?:b|c)?r(#*)"')


@dataclass
class Tok:
    kind: str  # "ident", "punct", "lit", "life"
    text: str
    line: int


def lex(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n, line = 0, len(src), 1
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += src[i] == "\n"
                    i += 1
            continue
        m = RAW_STR_RE.match(src, i)
        if m and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            close = '"' + m.group(1)
            j = src.find(close, m.end())
            j = n if j < 0 else j + len(close)
            toks.append(Tok("lit", "", line))
            line += src.count("\n", i, j)
            i = j
            continue
        if c == '"' or (c in "bc" and src.startswith('"', i + 1)):
            start_line = line
            i += 1 if c == '"' else 2
            content_start = i
            while i < n and src[i] != '"':
                if src[i] == "\\":
                    i += 1
                if i < n and src[i] == "\n":
                    line += 1
                i += 1
            toks.append(Tok("lit", src[content_start:i], start_line))
            i += 1
            continue
        if c == "'" or (c == "b" and src.startswith("'", i + 1)):
            k = i + (1 if c == "'" else 2)
            if k < n and src[k] == "\\":
                j = src.find("'", k + 2)
                toks.append(Tok("lit", "", line))
                i = j + 1
                continue
            if k + 1 < n and src[k + 1] == "'":
                toks.append(Tok("lit", "", line))
                i = k + 2
                continue
            m = IDENT_RE.match(src, k)
            if c == "'" and m:  # a lifetime or a label
                toks.append(Tok("life", m.group(0), line))
                i = m.end()
                continue
            i += 1
            continue
        if src.startswith("r#", i) and IDENT_RE.match(src, i + 2):
            m = IDENT_RE.match(src, i + 2)
            toks.append(Tok("ident", m.group(0), line))
            i = m.end()
            continue
        m = IDENT_RE.match(src, i)
        if m:
            toks.append(Tok("ident", m.group(0), line))
            i = m.end()
            continue
        if c.isdigit():
            j = i + 1
            while j < n and (src[j].isalnum() or src[j] == "_" or (src[j] == "." and j + 1 < n and src[j + 1].isdigit())):
                j += 1
            toks.append(Tok("lit", "", line))
            i = j
            continue
        if src.startswith("::", i):
            toks.append(Tok("punct", "::", line))
            i += 2
            continue
        toks.append(Tok("punct", c, line))
        i += 1
    return toks


# ---------------------------------------------------------------------------------------
# Scanning one file: module declarations, paths that name modules, function spans.


def cfg_is_test_only(attr: list[Tok]) -> bool:
    """`#[test]`, `#[cfg(test)]`, `#[cfg(all(test, ...))]`: the item exists only in tests."""
    words = [t.text for t in attr]
    if words == ["test"]:
        return True
    if not words or words[0] != "cfg":
        return False
    inner = "".join(words[1:])
    if inner == "(test)":
        return True
    m = re.fullmatch(r"\(all\((.*)\)\)", inner)
    return bool(m) and "test" in m.group(1).split(",")


@dataclass
class ModDecl:
    name: str
    path_attr: str | None
    inline_path: tuple[str, ...]  # enclosing inline modules within the file
    line: int


@dataclass
class Ref:
    """A path in module `scope` (file module + inline modules) that may name a module."""

    scope: tuple[str, ...]
    segments: tuple[str, ...]  # absolute, from the crate root
    line: int
    text: str


@dataclass
class FnSpan:
    name: str
    owner: str | None  # the impl/trait type, if any
    start: int
    end: int


@dataclass
class FileScan:
    test_only: bool = False
    mods: list[ModDecl] = field(default_factory=list)
    inline_mods: list[tuple[str, ...]] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    fns: list[FnSpan] = field(default_factory=list)


OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {")", "]", "}"}


def parse_use_tree(toks: list[Tok], i: int, prefix: list[str], out: list[tuple[list[str], int]]) -> int:
    """Parse a use tree starting at toks[i]; append each full path. Returns the index after it."""
    path = list(prefix)
    line = toks[i].line if i < len(toks) else 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "ident" and t.text != "as":
            path.append(t.text)
            i += 1
            if i < len(toks) and toks[i].text == "::":
                i += 1
                continue
            if i + 1 < len(toks) and toks[i].text == "as":
                i += 2  # the alias
            out.append((path, line))
            return i
        if t.text == "*":
            out.append((path, line))
            return i + 1
        if t.text == "{":
            i += 1
            while i < len(toks) and toks[i].text != "}":
                if toks[i].text == ",":
                    i += 1
                    continue
                i = parse_use_tree(toks, i, path, out)
            out.append((path, line))  # `use a::{}` still names `a`
            return i + 1
        return i + 1
    return i


def resolve_relative(scope: tuple[str, ...], segs: list[str]) -> tuple[str, ...] | None:
    """`crate::a::b` / `super::super::x` / `self::y` in `scope` -> absolute segments."""
    if not segs:
        return None
    if segs[0] == "crate":
        return tuple(segs[1:])
    if segs[0] in ("super", "self"):
        cur = list(scope)
        k = 0
        while k < len(segs) and segs[k] in ("super", "self"):
            if segs[k] == "super":
                if not cur:
                    return None
                cur.pop()
            k += 1
        return tuple(cur + segs[k:])
    return None


def scan_file(src: str, module: tuple[str, ...]) -> FileScan:
    toks = lex(src)
    scan = FileScan()
    n = len(toks)

    # Frames: one per open bracket. kind: "mod" (inline module), "fn", "impl", "other".
    frames: list[dict] = []
    inline: list[str] = []  # names of the inline modules we are in
    impl_owner: list[str | None] = []
    pending_attrs: list[list[Tok]] = []
    pending: dict | None = None  # what the next `{` opens: mod/fn/impl
    skip_depth: int | None = None  # inside a test-only item that started at this depth
    item_path_attr: str | None = None  # the current item's `#[path = "..."]`

    def scope() -> tuple[str, ...]:
        return module + tuple(inline)

    i = 0
    # An inner `#![cfg(test)]` before any item makes the whole file test-only.
    while i + 2 < n and toks[i].text == "#" and toks[i + 1].text == "!" and toks[i + 2].text == "[":
        j, depth = i + 2, 0
        while j < n:
            if toks[j].text in OPEN:
                depth += 1
            elif toks[j].text in CLOSE:
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if cfg_is_test_only(toks[i + 3 : j]):
            scan.test_only = True
            return scan
        i = j + 1

    item_start = True  # the next token starts an item (after `;`, `{`, `}` or attributes)
    while i < n:
        t = toks[i]
        depth = len(frames)

        # Attributes.
        if t.text == "#" and i + 1 < n and toks[i + 1].text in ("[", "!"):
            j = i + 1 + (toks[i + 1].text == "!")
            k, d = j, 0
            while k < n:
                if toks[k].text in OPEN:
                    d += 1
                elif toks[k].text in CLOSE:
                    d -= 1
                    if d == 0:
                        break
                k += 1
            if toks[i + 1].text == "[":
                pending_attrs.append(toks[j + 1 : k])
            i = k + 1
            continue

        at_item_start = item_start
        if at_item_start:
            if skip_depth is None and any(cfg_is_test_only(a) for a in pending_attrs):
                skip_depth = depth
            item_path_attr = next(
                (a[2].text for a in pending_attrs if len(a) == 3 and a[0].text == "path" and a[1].text == "=" and a[2].kind == "lit"),
                None,
            )
        pending_attrs = []
        item_start = False

        if t.text in OPEN:
            kind = "other"
            if t.text == "{" and pending is not None and pending["depth"] == depth:
                kind = pending["kind"]
            frame = {"kind": kind, "close": OPEN[t.text]}
            if kind == "mod":
                inline.append(pending["name"])
                if skip_depth is None:
                    scan.inline_mods.append(scope())
            elif kind == "fn":
                frame.update(name=pending["name"], start=pending["line"], test=skip_depth is not None)
            elif kind == "impl":
                impl_owner.append(pending["name"])
            if t.text == "{" and pending is not None and pending["depth"] == depth:
                pending = None
            frames.append(frame)
            item_start = t.text == "{"
            i += 1
            continue
        if t.text in CLOSE:
            frame = frames.pop() if frames else {"kind": "other"}
            if frame["kind"] == "mod":
                inline.pop()
            elif frame["kind"] == "impl":
                impl_owner.pop()
            elif frame["kind"] == "fn" and not frame["test"]:
                owner = next((o for o in reversed(impl_owner) if o), None)
                scan.fns.append(FnSpan(frame["name"], owner, frame["start"], t.line))
            # A test item ends with its body's `}`, or when the enclosing group closes.
            if skip_depth is not None and (
                len(frames) < skip_depth or (len(frames) == skip_depth and t.text == "}")
            ):
                skip_depth = None
            if pending is not None and pending["depth"] > len(frames):
                pending = None
            item_start = t.text == "}"
            i += 1
            continue
        if t.text == ";":
            if pending is not None and pending["depth"] == depth:
                if pending["kind"] == "mod" and skip_depth is None:
                    scan.mods.append(ModDecl(pending["name"], pending.get("path"), tuple(inline), pending["line"]))
                pending = None
            if skip_depth is not None and depth == skip_depth:
                skip_depth = None
            item_start = True
            i += 1
            continue

        in_test = skip_depth is not None
        if t.kind == "ident" and t.text == "mod" and i + 1 < n and toks[i + 1].kind == "ident":
            pending = {"kind": "mod", "name": toks[i + 1].text, "line": t.line, "depth": depth, "path": item_path_attr}
            i += 2
            continue
        if t.kind == "ident" and t.text == "fn" and i + 1 < n and toks[i + 1].kind == "ident":
            pending = {"kind": "fn", "name": toks[i + 1].text, "line": t.line, "depth": depth}
            i += 2
            continue
        prev_text = toks[i - 1].text if i > 0 else ""
        item_keyword = at_item_start or prev_text in ("unsafe", "default", "pub", ")")
        if t.kind == "ident" and t.text in ("impl", "trait") and item_keyword:
            # The owner: the type after `for`, else the first name after `impl<...>`/`trait`.
            j, owner, angle = i + 1, None, 0
            while j < n and toks[j].text not in ("{", ";"):
                tx = toks[j].text
                angle += (tx == "<") - (tx == ">")
                if tx == "for" and angle == 0:
                    owner = None
                elif toks[j].kind == "ident" and angle == 0 and owner is None and tx not in ("dyn", "where", "unsafe", "const"):
                    owner = tx
                if tx == "where":
                    break
                j += 1
            pending = {"kind": "impl", "name": owner, "line": t.line, "depth": depth}
            i += 1
            continue
        if t.kind == "ident" and t.text == "use":
            j = i + 1
            if j < n and toks[j].text == "::":
                j += 1
            paths: list[tuple[list[str], int]] = []
            end = parse_use_tree(toks, j, [], paths)
            if not in_test:
                for segs, line in paths:
                    if segs and segs[0] == "self":
                        continue  # a child module: not an import of another module
                    absolute = resolve_relative(scope(), segs)
                    if absolute is not None:
                        scan.refs.append(Ref(scope(), absolute, line, "use " + "::".join(segs)))
            i = end
            continue
        if t.kind == "ident" and t.text in ("crate", "super", "self") and i + 1 < n and toks[i + 1].text == "::":
            prev = toks[i - 1] if i > 0 else None
            if prev is not None and (prev.text == "$" or prev.text == "in" or prev.text == "::"):
                i += 1
                continue
            segs, j = [], i
            while j < n and toks[j].kind == "ident" and j + 1 < n and toks[j + 1].text == "::":
                segs.append(toks[j].text)
                j += 2
            if j < n and toks[j].kind == "ident":
                segs.append(toks[j].text)
                j += 1
            if not in_test and segs[0] != "self":
                absolute = resolve_relative(scope(), segs)
                if absolute is not None:
                    scan.refs.append(Ref(scope(), absolute, t.line, "::".join(segs)))
            i = max(j, i + 1)
            continue
        i += 1
    return scan


# ---------------------------------------------------------------------------------------
# Crates: follow the module tree from each root.


@dataclass
class Module:
    path: tuple[str, ...]
    file: Path


@dataclass
class CrateTree:
    label: str
    root: Path
    modules: dict[tuple[str, ...], Module] = field(default_factory=dict)
    # inline module path -> the file module it belongs to
    owner: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)
    scans: dict[tuple[str, ...], FileScan] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def child_dir(file: Path) -> Path:
    """Where `mod x;` in `file` looks for x.rs / x/mod.rs."""
    if file.name in ("lib.rs", "main.rs", "mod.rs"):
        return file.parent
    return file.parent / file.stem


def build_tree(label: str, root: Path) -> CrateTree:
    tree = CrateTree(label, root)
    queue = [((), root)]
    while queue:
        path, file = queue.pop()
        if path in tree.modules:
            continue
        try:
            src = file.read_text(encoding="utf-8")
        except OSError as err:
            tree.missing.append(f"{file}: {err}")
            continue
        scan = scan_file(src, path)
        if scan.test_only:
            continue
        tree.modules[path] = Module(path, file)
        tree.owner[path] = path
        tree.scans[path] = scan
        for inline in scan.inline_mods:
            tree.owner[inline] = path
        for decl in scan.mods:
            base = child_dir(file).joinpath(*decl.inline_path)
            if decl.path_attr:
                candidates = [file.parent / decl.path_attr]
            else:
                candidates = [base / f"{decl.name}.rs", base / decl.name / "mod.rs"]
            found = next((c for c in candidates if c.is_file()), None)
            child = path + decl.inline_path + (decl.name,)
            if found is None:
                tree.missing.append(f"{file}:{decl.line}: no file for `mod {decl.name};`")
                continue
            queue.append((child, found))
    return tree


def resolve(tree: CrateTree, segments: tuple[str, ...]) -> tuple[str, ...]:
    """The file module a path names: its longest prefix that is a module, inline collapsed."""
    for k in range(len(segments), -1, -1):
        prefix = segments[:k]
        if prefix in tree.owner:
            return tree.owner[prefix]
    return ()


def import_graph(tree: CrateTree) -> dict[tuple[str, ...], dict[tuple[str, ...], Ref]]:
    """module -> {imported module -> the first reference that makes the edge}."""
    graph: dict[tuple[str, ...], dict[tuple[str, ...], Ref]] = {m: {} for m in tree.modules}
    for mod_path, scan in tree.scans.items():
        for ref in scan.refs:
            target = resolve(tree, ref.segments)
            if target != mod_path:
                graph[mod_path].setdefault(target, ref)
    return graph


def cycles(graph: dict) -> list[tuple[list, list]]:
    """For each strongly connected component with more than one module: a shortest cycle
    through its first module, and all its modules."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    sccs: list[list] = []
    counter = [0]

    def strongconnect(v) -> None:
        # Iterative Tarjan: deep module trees must not hit Python's recursion limit.
        work = [(v, iter(sorted(graph.get(v, {}))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, {})))))
                    advanced = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    sccs.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)

    out = []
    for comp in sccs:
        members = set(comp)
        start = min(comp)
        # Shortest path back to `start` inside the component (BFS).
        prev = {start: None}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for u in frontier:
                for w in sorted(graph[u]):
                    if w == start:
                        found = u
                        break
                    if w in members and w not in prev:
                        prev[w] = u
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        cycle = [start]
        u = found
        while u is not None and u != start:
            cycle.insert(1, u)
            u = prev[u]
        out.append((cycle + [start], sorted(comp)))
    return out


# ---------------------------------------------------------------------------------------
# The workspace.


def workspace_members(ws: Path) -> list[Path]:
    text = (ws / "Cargo.toml").read_text(encoding="utf-8")
    m = re.search(r"^\s*members\s*=\s*\[(.*?)\]", text, re.S | re.M)
    if not m:
        return [ws] if (ws / "src").is_dir() else []
    body = re.sub(r"#[^\n]*", "", m.group(1))
    members = []
    for pattern in re.findall(r'"([^"]+)"', body):
        for d in sorted(glob.glob(str(ws / pattern))):
            if (Path(d) / "Cargo.toml").is_file():
                members.append(Path(d))
    return members


def crate_roots(member: Path) -> list[tuple[str, Path]]:
    src = member / "src"
    roots = []
    if (src / "lib.rs").is_file():
        roots.append(("lib", src / "lib.rs"))
    if (src / "main.rs").is_file():
        roots.append(("bin main.rs", src / "main.rs"))
    for b in sorted((src / "bin").glob("*.rs")):
        roots.append((f"bin {b.name}", b))
    for b in sorted((src / "bin").glob("*/main.rs")):
        roots.append((f"bin {b.parent.name}", b))
    return roots


def mod_name(path: tuple[str, ...]) -> str:
    return "crate::" + "::".join(path) if path else "crate"


@dataclass
class Findings:
    cycles: list[str] = field(default_factory=list)
    long_fns: list[tuple[str, str]] = field(default_factory=list)  # (key, text)
    allowed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    test_placement: list[str] = field(default_factory=list)

    def failed(self) -> bool:
        return bool(self.cycles or self.long_fns or self.layers or self.test_placement)


def layer_violations(ws: Path, tree: CrateTree, graph: dict, rules: dict[str, set[str]]) -> list[str]:
    out = []
    for a, targets in sorted(graph.items()):
        if not a or a[0] not in rules:
            continue
        allowed = rules[a[0]] | {a[0]}
        for b, ref in sorted(targets.items()):
            if b and b[0] in allowed:
                continue
            what = "the crate root (a re-export: name the module instead)" if not b else f"`{b[0]}`"
            file = tree.modules[a].file.relative_to(ws).as_posix()
            may = ", ".join(sorted(rules[a[0]])) or "nothing of ours"
            out.append(
                f"{tree.label}: layer `{a[0]}` imports {what} (it may import: {may})\n"
                f"    {mod_name(a)} -> {mod_name(b)}: {file}:{ref.line} `{ref.text}`"
            )
    return out


def test_placement(ws: Path, src: Path) -> list[str]:
    out = []
    for file in sorted(src.rglob("*.rs")):
        text = file.read_text(encoding="utf-8")
        rel = file.relative_to(ws).as_posix()
        for m in INLINE_TESTS_RE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append(f"{rel}:{line}: inline `mod tests {{ }}`: move it to the module's `tests.rs`")
        for m in PATH_ATTR_RE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append(f"{rel}:{line}: `#[path]` module: tests go in the module's `tests.rs`")
    return out


def check(ws: Path, allowlist: dict[str, str], max_lines: int = MAX_FN_LINES) -> Findings:
    found = Findings()
    seen_fns: set[tuple[Path, int]] = set()
    long_keys: set[str] = set()
    for member in workspace_members(ws):
        rel_member = member.relative_to(ws).as_posix() if member != ws else "."
        for kind, root in crate_roots(member):
            tree = build_tree(f"{rel_member} ({kind})", root)
            found.notes.extend(f"{tree.label}: {m}" for m in tree.missing)
            graph = import_graph(tree)
            rules = LAYERS.get(root.parent.relative_to(ws).as_posix())
            if rules is not None and root.name == "lib.rs":
                found.layers.extend(layer_violations(ws, tree, graph, rules))
            for cycle, members in cycles(graph):
                lines = [f"{tree.label}: import cycle " + " -> ".join(mod_name(m) for m in cycle)]
                if len(members) + 1 > len(cycle):
                    others = ", ".join(mod_name(m) for m in members if m not in cycle)
                    lines.append(f"    (more cycles through the same modules, also via: {others})")
                for a, b in zip(cycle, cycle[1:]):
                    ref = graph[a][b]
                    file = tree.modules[a].file.relative_to(ws).as_posix()
                    lines.append(f"    {mod_name(a)} -> {mod_name(b)}: {file}:{ref.line} `{ref.text}`")
                found.cycles.append("\n".join(lines))
            for mod_path, scan in sorted(tree.scans.items()):
                file = tree.modules[mod_path].file
                for fn in scan.fns:
                    if (file, fn.start) in seen_fns:
                        continue  # a module shared by the lib and a bin
                    seen_fns.add((file, fn.start))
                    length = fn.end - fn.start + 1
                    if length <= max_lines:
                        continue
                    rel = file.relative_to(ws).as_posix()
                    who = f"{fn.owner}::{fn.name}" if fn.owner else fn.name
                    key = f"{rel}::{who}"
                    text = f"{rel}:{fn.start} fn {who}: {length} lines"
                    long_keys.add(key)
                    if allowlist.get(key, "").strip():
                        found.allowed.append((key, f"{text} (allowed: {allowlist[key]})"))
                    else:
                        found.long_fns.append((key, text))
    for src in ONE_TESTS_FILE:
        if (ws / src).is_dir():
            found.test_placement.extend(test_placement(ws, ws / src))
    for key, reason in allowlist.items():
        if not reason.strip():
            found.notes.append(f"allowlist entry {key} gives no reason, so it allows nothing")
        if key not in long_keys:
            found.notes.append(f"allowlist entry {key} is stale: no such function over {max_lines} lines")
    return found


def print_findings(found: Findings) -> None:
    for c in found.cycles:
        print(c)
    for _, text in found.long_fns:
        print(f"long function (> {MAX_FN_LINES} lines, not allowlisted): {text}")
    for _, text in found.allowed:
        print(f"long function: {text}")
    for v in found.layers:
        print(v)
    for t in found.test_placement:
        print(f"test placement: {t}")
    for note in found.notes:
        print(f"note: {note}")
    print(
        f"check-structure: {len(found.cycles)} import cycle(s), "
        f"{len(found.long_fns)} long function(s) not allowlisted, {len(found.allowed)} allowlisted, "
        f"{len(found.layers)} layer violation(s), {len(found.test_placement)} misplaced test module(s)"
    )


# ---------------------------------------------------------------------------------------
# Self-test: tiny synthetic workspaces in a temp dir.


def write_tree(base: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def long_body(n: int) -> str:
    return "".join(f"    let x{k} = {k};\n" for k in range(n))


def self_test() -> int:
    cases = []

    def case(name):
        def add(fn):
            cases.append((name, fn))
            return fn

        return add

    ws_toml = '[workspace]\nmembers = ["a"]\n'
    crate_toml = '[package]\nname = "a"\n'

    @case("a two-module cycle is found and printed")
    def _(base: Path):
        write_tree(base, {
            "Cargo.toml": ws_toml, "a/Cargo.toml": crate_toml,
            "a/src/lib.rs": "pub mod x;\npub mod y;\n",
            "a/src/x.rs": "use crate::y::Y;\npub struct X;\n",
            "a/src/y.rs": "pub struct Y;\npub fn f() -> crate::x::X { crate::x::X }\n",
        })
        f = check(base, {})
        assert len(f.cycles) == 1, f.cycles
        assert "crate::x -> crate::y -> crate::x" in f.cycles[0], f.cycles[0]
        assert "a/src/x.rs:1" in f.cycles[0] and "a/src/y.rs:2" in f.cycles[0], f.cycles[0]

    @case("a three-module cycle through super:: and a folder module is found")
    def _(base: Path):
        write_tree(base, {
            "Cargo.toml": '[workspace]\nmembers = [\n  "a", # the only one\n]\n', "a/Cargo.toml": crate_toml,
            "a/src/lib.rs": "mod p;\nmod q;\n",
            "a/src/p/mod.rs": "mod r;\nmod s;\n",
            "a/src/p/r.rs": "use super::s::S;\n",  # p::r -> p::s
            "a/src/p/s.rs": "pub struct S;\nfn g() { crate::q::h(); }\n",  # p::s -> q
            "a/src/q.rs": "pub fn h() {}\nuse crate::p::{r::{self}, t};\n",  # q -> p::r (and p)
        })
        f = check(base, {})
        assert len(f.cycles) == 1, f.cycles
        assert "crate::p::r -> crate::p::s -> crate::q -> crate::p::r" in f.cycles[0], f.cycles[0]

    @case("a DAG passes; test modules, test files, macros and inline modules add no edge")
    def _(base: Path):
        write_tree(base, {
            "Cargo.toml": ws_toml, "a/Cargo.toml": crate_toml,
            "a/src/lib.rs": "pub mod x;\npub mod y;\n#[cfg(test)]\nmod tests;\n",
            "a/src/x.rs": (
                "use crate::y::Y;\n"
                "mod inner {\n    use super::helper;\n    pub(in crate::x) fn f() {}\n}\n"
                "fn helper() {}\n"
                "// use crate::x::never; in a comment\n"
                "const S: &str = \"crate::y::not_code\";\n"
            ),
            "a/src/y.rs": (
                "pub struct Y;\n"
                "#[cfg(test)]\nmod tests {\n    use crate::x::X;\n}\n"
                "#[cfg(test)]\nuse crate::x::Z;\n"
                "macro_rules! m { () => { $crate::x::f() } }\n"
                "#[cfg(test)]\n#[path = \"y_tests.rs\"]\nmod more;\n"
            ),
            "a/src/y_tests.rs": "use crate::x::X;\n",
            "a/src/tests.rs": "use crate::x::X;\nuse crate::y::Y;\n",
            "a/src/bin/tool.rs": "fn main() { a::y::Y; }\n",
        })
        f = check(base, {})
        assert f.cycles == [], f.cycles
        assert f.long_fns == [], f.long_fns

    @case("a long function is found; an allowlisted one is reported with its reason")
    def _(base: Path):
        write_tree(base, {
            "Cargo.toml": ws_toml, "a/Cargo.toml": crate_toml,
            "a/src/lib.rs": "mod z;\npub struct T;\nimpl T {\n    pub fn long(&self) {\n" + long_body(90) + "    }\n}\n",
            "a/src/z.rs": "pub fn table() -> u32 {\n" + long_body(85) + "    0\n}\nfn short() {\n" + long_body(10) + "}\n",
        })
        f = check(base, {"a/src/z.rs::table": "flat table of defaults"})
        assert [k for k, _ in f.long_fns] == ["a/src/lib.rs::T::long"], f.long_fns
        assert "fn T::long: 92 lines" in f.long_fns[0][1], f.long_fns
        assert [k for k, _ in f.allowed] == ["a/src/z.rs::table"], f.allowed
        f = check(base, {"a/src/z.rs::gone": "x"})
        assert any("stale" in n for n in f.notes), f.notes
        f = check(base, {"a/src/z.rs::table": " "})
        assert len(f.long_fns) == 2 and not f.allowed, (f.long_fns, f.allowed)

    @case("a long test function is ignored (#[cfg(test)] module, #[test] fn, test-only file)")
    def _(base: Path):
        write_tree(base, {
            "Cargo.toml": ws_toml, "a/Cargo.toml": crate_toml,
            "a/src/lib.rs": (
                "mod w;\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn long() {\n" + long_body(90) + "    }\n}\n"
                "#[test]\nfn top_level_test() {\n" + long_body(90) + "}\n"
                "#[cfg(all(test, unix))]\nfn helper() {\n" + long_body(90) + "}\n"
            ),
            "a/src/w.rs": "#![cfg(test)]\nfn long() {\n" + long_body(90) + "}\n",
            "a/tests/it.rs": "#[test]\nfn long() {\n" + long_body(90) + "}\n",
        })
        f = check(base, {})
        assert f.long_fns == [], f.long_fns

    @case("lexing: strings, raw strings, chars and lifetimes do not confuse brace counting")
    def _(base: Path):
        write_tree(base, {
            "Cargo.toml": ws_toml, "a/Cargo.toml": crate_toml,
            "a/src/lib.rs": (
                "pub fn f<'a>(s: &'a str) -> char {\n    let _ = \"{ \\\" {\";\n    let _ = r#\"}\"}\"#;\n"
                "    let _ = '{';\n    let _ = b'}';\n    '}'\n}\n"
                "pub fn long() {\n" + long_body(85) + "}\n"
            ),
        })
        f = check(base, {})
        assert [t for _, t in f.long_fns] == ["a/src/lib.rs:8 fn long: 87 lines"], f.long_fns

    layered = {
        "Cargo.toml": ws_toml, "a/Cargo.toml": crate_toml,
        "a/src/lib.rs": "pub mod low;\npub mod mid;\npub mod top;\npub mod side;\npub use top::Start;\n",
        "a/src/low/mod.rs": "pub mod x;\n",
        "a/src/low/x.rs": "pub struct X;\n",
        "a/src/mid/mod.rs": "pub mod y;\n",
        "a/src/mid/y.rs": "use crate::low::x::X;\npub struct Y(pub X);\n#[cfg(test)]\nmod tests;\n",
        "a/src/mid/y/tests.rs": "use crate::top::Start;\n",  # tests may reach anywhere
        "a/src/top/mod.rs": "use crate::mid::y::Y;\npub struct Start(pub Y);\n",
        "a/src/side/mod.rs": "use crate::low::x::X;\n",
    }
    rules = {"a/src": {"low": set(), "mid": {"low"}, "top": {"mid", "low"}, "side": {"low"}}}

    @case("layers: imports down the layers pass (tests may reach anywhere)")
    def _(base: Path):
        write_tree(base, layered)
        LAYERS.update(rules)
        f = check(base, {})
        assert f.layers == [] and not f.failed(), f.layers

    @case("layers: a layer importing one above it fails, through use, paths and super::")
    def _(base: Path):
        write_tree(base, {
            **layered,
            "a/src/mid/y.rs": "use crate::low::x::X;\npub struct Y(pub X);\nfn f() { crate::top::Start; }\n",
            "a/src/low/x.rs": "pub struct X;\nuse super::super::side;\n",
            "a/src/side/mod.rs": "use crate::Start;\n",
        })
        LAYERS.update(rules)
        f = check(base, {})
        assert f.failed(), f
        assert len(f.layers) == 3, f.layers
        text = "\n".join(f.layers)
        assert "layer `mid` imports `top`" in text and "a/src/mid/y.rs:3" in text, text
        assert "layer `low` imports `side` (it may import: nothing of ours)" in text, text
        assert "layer `side` imports the crate root" in text, text

    @case("test placement: an inline tests module or a #[path] test file fails")
    def _(base: Path):
        write_tree(base, {
            **layered,
            "a/src/low/x.rs": "pub struct X;\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n",
            "a/src/side/mod.rs": "#[cfg(test)]\n#[path = \"side_tests.rs\"]\nmod tests;\n",
            "a/src/side/side_tests.rs": "",
        })
        ONE_TESTS_FILE.append("a/src")
        f = check(base, {})
        assert f.failed() and len(f.test_placement) == 2, f.test_placement
        assert f.test_placement[0].startswith("a/src/low/x.rs:3: inline"), f.test_placement
        assert f.test_placement[1].startswith("a/src/side/mod.rs:2: `#[path]`"), f.test_placement

    failed = 0
    for name, fn in cases:
        with tempfile.TemporaryDirectory(prefix="check-structure-") as tmp:
            try:
                fn(Path(tmp))
                print(f"ok    {name}")
            except AssertionError as err:
                failed += 1
                print(f"FAIL  {name}: {err}")
    print(f"check-structure self-test: {len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--report", action="store_true", help="print the findings; exit 0")
    ap.add_argument("--self-test", action="store_true", help="check the checker on synthetic trees")
    ap.add_argument("--workspace", type=Path, default=Path(__file__).resolve().parent.parent)
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    found = check(args.workspace, ALLOWLIST)
    print_findings(found)
    if args.report:
        return 0
    return 1 if found.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
