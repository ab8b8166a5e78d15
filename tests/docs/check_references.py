#!/usr/bin/python3
"""The repository must carry everything a reader is pointed to.

usage: check_references.py SOURCE_DIR

Fails when a document, header, script or test names a Markdown file that is not in the
repository (DESIGN.md was one: referred to by five files, present in none), mentions
DESIGN.md at all, or when an example has no README (the top README promises one).
"""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1])
SKIP_DIRS = {".git", "node_modules", "__pycache__"}
TEXT_EXT = (".md", ".hpp", ".cpp", ".h", ".py", ".sh", ".txt", ".cmake", ".in")
# A path-like word ending in .md: docs/protocol.md, patterns/queue/README.md, ../x.md
MD_REF = re.compile(r"[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b")


def files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith("build")]
        for f in filenames:
            if f.endswith(TEXT_EXT) or f == "CMakeLists.txt":
                yield os.path.join(dirpath, f)


def exists(ref, source):
    ref = ref[2:] if ref.startswith("./") else ref
    ref = ref.lstrip("/")  # ${PROJECT_SOURCE_DIR}/README.md and the like: from the root
    here = os.path.dirname(source)
    candidates = [os.path.join(ROOT, ref), os.path.join(here, ref)]
    # "README.md" alone names the README of the folder being discussed: any README will do.
    if os.path.basename(ref) == ref:
        return True if ref == "README.md" else any(os.path.exists(c) for c in candidates)
    return any(os.path.exists(os.path.normpath(c)) for c in candidates)


problems = []
for path in files():
    if os.path.abspath(path) == os.path.abspath(__file__):
        continue
    rel = os.path.relpath(path, ROOT)
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if "DESIGN.md" in line or re.search(r"\bDESIGN\b", line):
                problems.append("%s:%d: refers to DESIGN.md, which is not in the repository" % (rel, n))
                continue
            for ref in MD_REF.findall(line):
                if re.search(r"https?://\S*" + re.escape(ref), line):
                    continue  # a web address
                if not exists(ref, path):
                    problems.append("%s:%d: refers to %s, which is not in the repository" % (rel, n, ref))

# The top README says of every example "see its README".
examples = os.path.join(ROOT, "examples")
for name in sorted(os.listdir(examples)):
    folder = os.path.join(examples, name)
    if os.path.exists(os.path.join(folder, "CMakeLists.txt")) and not os.path.exists(
            os.path.join(folder, "README.md")):
        problems.append("examples/%s has no README.md (the top README says: see its README)" % name)

for p in problems:
    print(p)
print("%d missing references" % len(problems))
sys.exit(1 if problems else 0)
