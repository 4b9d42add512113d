#!/usr/bin/env python3
"""Checks the user guide's links; exits non-zero naming every broken one.

* Markdown links between chapters (`[text](storage.md#sizing-a-disk)`):
  the chapter exists and, with an anchor, has a heading with that id (as
  mdBook derives ids from headings).
* Repository paths named in the text (`tests/tests/partial_connectivity.rs`,
  `omnipaxos_runtime/src/net/`, also with a `*` glob) exist in the repository.
* Every chapter in SUMMARY.md is compiled by the book crate
  (book/doctest/src/lib.rs), and every chapter file is in SUMMARY.md.
* The README and the crate docs of omnipaxos point only at chapters that exist.

Links to the web (http:, https:) are not checked: CI has no network.
"""
import glob
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SRC = os.path.join(ROOT, "book", "src")
# Top-level entries of the repository a chapter may name as a path.
REPO_DIRS = ("omnipaxos/", "omnipaxos_macros/", "omnipaxos_storage/", "omnipaxos_runtime/",
             "omnipaxos_ui/", "omnipaxos_sim/", "tests/", "examples/", "book/", "notes/", ".ci/", "fuzz/")

errors = []


def strip_code_blocks(text):
    """The text with fenced code blocks blanked out (line numbers kept)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return out


def heading_ids(path):
    """The ids mdBook gives the headings of a chapter."""
    ids, counts = set(), {}
    for line in strip_code_blocks(open(path, encoding="utf-8").read()):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"`([^`]*)`", r"\1", m.group(1))
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)
        base = "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")
        n = counts.get(base, 0)
        counts[base] = n + 1
        ids.add(base if n == 0 else f"{base}-{n}")
    return ids


def check_chapter(name):
    path = os.path.join(SRC, name)
    lines = strip_code_blocks(open(path, encoding="utf-8").read())
    for lineno, line in enumerate(lines, 1):
        where = f"book/src/{name}:{lineno}"
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            file_path = os.path.normpath(os.path.join(SRC, file)) if file else path
            if not os.path.exists(file_path):
                errors.append(f"{where}: link to missing file {target}")
            elif anchor and file_path.endswith(".md") and anchor not in heading_ids(file_path):
                errors.append(f"{where}: no heading #{anchor} in {file or name}")
        for code in re.findall(r"`([^`\s]+)`", line):
            if not code.startswith(REPO_DIRS):
                continue
            if not glob.glob(os.path.join(ROOT, code)):
                errors.append(f"{where}: repository path {code} does not exist")


summary = open(os.path.join(SRC, "SUMMARY.md"), encoding="utf-8").read()
listed = re.findall(r"\]\(([^)]+\.md)\)", summary)
book_crate = open(os.path.join(ROOT, "book", "doctest", "src", "lib.rs"), encoding="utf-8").read()
compiled = set(re.findall(r'=>\s*"([^"]+\.md)"', book_crate))
for name in listed:
    if not os.path.exists(os.path.join(SRC, name)):
        errors.append(f"book/src/SUMMARY.md: {name} does not exist")
    elif name not in compiled:
        errors.append(f"book/doctest/src/lib.rs: chapter {name} is not compiled (add it to chapters!)")
for path in sorted(glob.glob(os.path.join(SRC, "*.md"))):
    name = os.path.basename(path)
    if name != "SUMMARY.md" and name not in listed:
        errors.append(f"book/src/{name}: not listed in SUMMARY.md")
    if name != "SUMMARY.md":
        check_chapter(name)
for name in compiled:
    if name not in listed:
        errors.append(f"book/doctest/src/lib.rs: compiles {name}, which SUMMARY.md does not list")

for doc in ("README.md", "omnipaxos/src/lib.rs"):
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    for chapter in re.findall(r"book/src/([\w./-]+\.md)", text):
        if not os.path.exists(os.path.join(SRC, chapter)):
            errors.append(f"{doc}: names book/src/{chapter}, which does not exist")

for e in errors:
    print(e)
print(f"book links: {len(listed)} chapters checked, {len(errors)} problem(s)")
sys.exit(1 if errors else 0)
