"""config/README.md's key tables, generated from config/schema.yaml: each key's type and allowed
values, its default (or "required") and its description, so that what a key does is written once,
in the schema. A table sits between `<!-- config table: PATH -->` and `<!-- end of config table -->`
and lists PATH and every key below it, except those under another table's PATH.

    python scripts/config_docs.py config/schema.yaml config/README.md           # rewrite the tables
    python scripts/config_docs.py config/schema.yaml config/README.md --check   # exit 1 if stale
"""

import argparse
import re
import sys
from pathlib import Path

import yaml

START = re.compile(r"^<!-- config table: (\S+) -->$", re.M)
END = "<!-- end of config table -->"
HEADER = "| key | type / allowed values | default | what it does |\n| --- | --- | --- | --- |\n"
NAME = "<name>"  # a key of a map whose keys the user names (models, settings, test_sets, judge_panel)


class ConfigDocsError(Exception):
    pass


def resolve(schema: dict, node: dict) -> dict:
    """The node a `$ref` points to (a local `#/...` reference), else the node itself."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def description(schema: dict, node: dict) -> str:
    """The node's own description (one beside a `$ref` wins), else its target's."""
    if "description" in node:
        return " ".join(str(node["description"]).split())
    return " ".join(str(resolve(schema, node).get("description", "")).split())


def children(schema: dict, node: dict) -> list[tuple[str, dict, bool]]:
    """(key, subschema, required) of an object node: its named properties, or NAME for a map."""
    node = resolve(schema, node)
    required = set(node.get("required", []))
    named = [(key, sub, key in required) for key, sub in node.get("properties", {}).items()]
    if isinstance(node.get("additionalProperties"), dict):
        named.append((NAME, node["additionalProperties"], False))
    return named


def find(schema: dict, path: str) -> dict:
    node = schema
    for key in path.split("."):
        found = dict((k, sub) for k, sub, _ in children(schema, node))
        if key not in found:
            raise ConfigDocsError(f"config/README.md: config table {path}: the schema has no key {key!r} there")
        node = found[key]
    return node


def literal(value) -> str:
    return "`" + yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("\n...") + "`"


def bounds(node: dict) -> str:
    """A number's range in words: " ≥ 1", or ", 0 ≤ x < 1" where it has both ends."""
    low = next(((sign, node[k]) for k, sign in (("minimum", "≤"), ("exclusiveMinimum", "<")) if k in node), None)
    high = next(((sign, node[k]) for k, sign in (("maximum", "≤"), ("exclusiveMaximum", "<")) if k in node), None)
    if low and high:
        return f", {low[1]} {low[0]} x {high[0]} {high[1]}"
    if low:
        return f" {'≥' if low[0] == '≤' else '>'} {low[1]}"
    return f" {high[0]} {high[1]}" if high else ""


def kind(schema: dict, node: dict) -> str:
    """The type and allowed values, in words."""
    node = resolve(schema, node)
    if "enum" in node:
        return "one of " + ", ".join(literal(v) for v in node["enum"])
    if "const" in node:
        return literal(node["const"])
    for combinator in ("anyOf", "oneOf"):
        if combinator in node and "type" not in node:
            return " or ".join(kind(schema, option) for option in node[combinator])
    types = node.get("type", "object")
    words = []
    for name in types if isinstance(types, list) else [types]:
        if name in ("integer", "number"):
            words.append(name + bounds(node))
        elif name == "string" and "pattern" in node:
            words.append(f"string matching `{node['pattern']}`")
        elif name == "array":
            items = kind(schema, node["items"]) + "s" if "items" in node else "values"
            words.append(f"list of {items}" + (f", at least {node['minItems']}" if "minItems" in node else ""))
        else:
            words.append(name)
    return " or ".join(words)


def rows(schema: dict, path: str, node: dict, required: bool, skip: set[str], seen: set[int]) -> list[str]:
    cells = [
        f"`{path}`",
        kind(schema, node),
        "required" if required else literal(node["default"]) if "default" in node else "—",
        description(schema, node),
    ]
    target = resolve(schema, node)
    out = [] if target.get("type", "object") == "object" and not cells[3] else [cells]
    if "$ref" in node and id(target) in seen:
        return out  # a shape documented already (judge_panel's judges: as `judge`)
    if "$ref" in node:
        seen.add(id(target))
    for key, sub, req in children(schema, node):
        if f"{path}.{key}" not in skip:
            out += rows(schema, f"{path}.{key}", sub, req, skip, seen)
    return out


def table(schema: dict, path: str, skip: set[str], seen: set[int]) -> str:
    parent, _, key = path.rpartition(".")
    required = key in resolve(schema, find(schema, parent)).get("required", []) if parent else key in schema["required"]
    lines = rows(schema, path, find(schema, path), required, skip, seen)
    return HEADER + "".join("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n" for cells in lines)


def render(schema: dict, readme: str) -> str:
    """The README with every config table regenerated."""
    paths = START.findall(readme)
    if not paths:
        raise ConfigDocsError("config/README.md: no `<!-- config table: PATH -->` marker")
    seen: set[int] = set()
    parts, position = [], 0
    for match in START.finditer(readme):
        end = readme.find(END, match.end())
        if end < 0:
            line = readme.count("\n", 0, match.start()) + 1
            raise ConfigDocsError(f"config/README.md line {line}: config table {match[1]} has no {END!r}")
        skip = {p for p in paths if p != match[1]}
        parts += [readme[position : match.end()], "\n", table(schema, match[1], skip, seen)]
        position = end
    return "".join(parts) + readme[position:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("schema", type=Path)
    parser.add_argument("readme", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the tables differ from the schema")
    args = parser.parse_args(argv)
    schema = yaml.safe_load(args.schema.read_text(encoding="utf-8"))
    readme = args.readme.read_text(encoding="utf-8")
    try:
        new = render(schema, readme)
    except ConfigDocsError as error:
        print(error, file=sys.stderr)
        return 1
    if args.check:
        if new != readme:
            print(f"{args.readme}: config tables out of date; run `make config-docs`", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
