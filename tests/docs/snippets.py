#!/usr/bin/python3
"""Extracts the C++ examples of the documentation into translation units, so that the build
compiles them (target docs_snippets, test docs_snippets_compile) and an example that stops
compiling fails the test suite instead of misleading readers.

usage: snippets.py generate OUT_DIR ROOT FILE...   writes one .cpp per FILE that has examples,
                                                    prints the paths written (one per line)
       snippets.py list ROOT FILE...                prints FILE:LINE and the first line of each example

Which examples:
- Markdown: every fenced block whose info string is `cpp` or `c++`.
- Headers: a fenced block inside a comment, `//   ```cpp` ... `//   ````.
- A block whose info string also says `nocompile` (```cpp nocompile) is skipped: use it only for
  pseudo-code that is not meant to compile, and say so next to it.

How a block becomes code (see snippet_prelude.hpp for what every block can use):
- `#include` lines move to the top of the file;
- declarations at the block's top level (struct, class, enum, union, namespace, template, using
  X = ...) stay at namespace scope;
- every other line becomes the body of a function taking `zmq::context_t& ctx` (unless the
  block declares its own `zmq::context_t ctx`);
- each block lives in a namespace of its own, and `#line` directives point compiler errors at
  the documentation file and line.
"""
import os
import re
import sys

FENCE_OPEN = re.compile(r"^\s*```\s*(c\+\+|cpp)\b(.*)$")
FENCE_CLOSE = re.compile(r"^\s*```\s*$")
TOP_LEVEL = re.compile(r"^(struct|class|enum|union|namespace|template)\b|^using\s+\w+\s*=")
OWN_CONTEXT = re.compile(r"\bzmq::context_t\s+ctx\b")


def blocks(path):
    """Yields (first_line_number, lines, nocompile) for every C++ example in the file."""
    with open(path, encoding="utf-8") as f:
        raw = f.read().split("\n")
    header = path.endswith((".hpp", ".h"))
    inside, start, lines, nocompile = False, 0, [], False
    for n, line in enumerate(raw, 1):
        text = line
        if header:
            if not line.startswith("//"):
                if inside:
                    raise SystemExit("%s:%d: example not closed inside the comment" % (path, n))
                continue
            text = line[2:]
        if not inside:
            m = FENCE_OPEN.match(text)
            if m:
                inside, start, lines, nocompile = True, n + 1, [], "nocompile" in m.group(2)
        elif FENCE_CLOSE.match(text):
            inside = False
            yield start, dedent(lines), nocompile
        else:
            lines.append(text)
    if inside:
        raise SystemExit("%s:%d: example not closed" % (path, start - 1))


def dedent(lines):
    indents = [len(l) - len(l.lstrip()) for l in lines if l.strip()]
    cut = min(indents) if indents else 0
    return [l[cut:] for l in lines]


def brace_delta(line):
    code = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'', '""', line.split("//")[0])
    return code.count("{") - code.count("}")


def split(lines):
    """Returns (includes, declarations, body), each a list of (line_offset, text)."""
    includes, decls, body = [], [], []
    depth, in_decl = 0, False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if depth == 0 and not in_decl:
            if stripped.startswith("#include"):
                includes.append((i, line))
                continue
            if TOP_LEVEL.match(stripped):
                in_decl = True
        (decls if in_decl else body).append((i, line))
        depth += brace_delta(line)
        if in_decl and depth == 0 and stripped.endswith((";", "}")):
            in_decl = False
    return includes, decls, body


def emit(chunk, path, first, out):
    last = None
    for i, text in chunk:
        if last is None or i != last + 1:
            out.append('#line %d "%s"' % (first + i, path))
        out.append(text)
        last = i


def translation_unit(root, path):
    rel = os.path.relpath(path, root)
    found = [(first, lines) for first, lines, nocompile in blocks(path) if not nocompile]
    if not found:
        return None
    out = ["// Generated from %s by tests/docs/snippets.py: do not edit." % rel,
           '#include "snippet_prelude.hpp"']
    pieces = []
    for k, (first, lines) in enumerate(found):
        if any("int main(" in l for l in lines):
            raise SystemExit("%s:%d: examples with main() are not supported; show the body" % (rel, first))
        includes, decls, body = split(lines)
        emit(includes, rel, first, out)
        piece = ["namespace zmqkit_snippets::example_%d {" % k]
        emit(decls, rel, first, piece)
        own = any(OWN_CONTEXT.search(t) for _, t in body)
        piece.append("[[maybe_unused]] void run(%s) {" % ("" if own else "[[maybe_unused]] zmq::context_t& ctx"))
        emit(body, rel, first, piece)
        piece.append("}")
        piece.append("}  // namespace zmqkit_snippets::example_%d" % k)
        pieces += piece
    return "\n".join(out + pieces) + "\n"


def main(argv):
    if len(argv) >= 3 and argv[0] == "list":
        root = argv[1]
        for path in argv[2:]:
            for first, lines, nocompile in blocks(path):
                print("%s:%d%s: %s" % (os.path.relpath(path, root), first, " (nocompile)" if nocompile else "",
                                       next((l.strip() for l in lines if l.strip()), "")))
        return 0
    if len(argv) >= 3 and argv[0] == "generate":
        out_dir, root = argv[1], argv[2]
        os.makedirs(out_dir, exist_ok=True)
        for path in argv[3:]:
            tu = translation_unit(root, path)
            if tu is None:
                continue
            name = re.sub(r"[^A-Za-z0-9]+", "_", os.path.relpath(path, root)) + ".cpp"
            target = os.path.join(out_dir, name)
            old = open(target).read() if os.path.exists(target) else None
            if old != tu:  # unchanged files keep their timestamp: no rebuild
                with open(target, "w") as f:
                    f.write(tu)
            print(target)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
