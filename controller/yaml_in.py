"""Operator YAML, read strictly: PyYAML's safe loader that refuses duplicate keys and bounds aliases
and the expanded size; any problem is the caller's InputError naming the origin, line and column.

Apart from files.py so that a command reading no YAML (`models` and `plan` with the built-in
catalog only, whose snapshot is JSON) does not import PyYAML (about 20 ms of the start-up)."""

from __future__ import annotations

from typing import Any

import yaml

from controller.errors import InputError

# A YAML file may reuse a block with an alias a few times; more is a bomb, not a catalog.
MAX_YAML_ALIASES = 200
MAX_YAML_NODES = 50_000


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys, counts aliases and bounds the expanded size."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_YAML_ALIASES} aliases (*name)", self.peek_event().start_mark
                )
        return super().compose_node(parent, index)

    def construct_document(self, node):  # noqa: ANN001, ANN201
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, "a mapping key must be a plain value", key_node.start_mark
                    ) from None
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        f"key {key!r} first set on line {first.start_mark.line + 1}",
                        first.start_mark,
                        f"duplicate key {key!r}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(root: yaml.Node) -> None:
    """Count nodes as if every alias were copied: a billion-laughs file stops here, before it is built."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise yaml.composer.ComposerError(None, None, "an alias refers to its own anchor", node.start_mark)
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        if total > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"expands to more than {MAX_YAML_NODES} values (aliases?)", node.start_mark
            )
        sizes[key] = total
        return total

    size(root)


def load_yaml(text: str, origin: str, error: type[InputError]) -> Any:
    """Parse one YAML document safely; any problem becomes `error` naming origin, line and column."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        problem = exc.problem or exc.context or "cannot be read"
        if isinstance(exc, yaml.scanner.ScannerError | yaml.parser.ParserError):
            problem = f"not valid YAML: {problem}"
        raise error(f"{origin}{where}: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise error(f"{origin}: not valid YAML ({exc})") from None
    except RecursionError:
        raise error(f"{origin}: nested too deeply") from None
