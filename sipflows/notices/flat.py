"""Jinja templates compiled flat: a template's layout and includes put in place once, at compile time.

Jinja renders ``{% extends %}`` and ``{% include %}`` at run time: each include and the layout make a new
context, a copy of every variable, for every render. The built-in notice templates are a layout, a body
and two or three includes, rendered three times per notice (subject, text, HTML) and thousands of times
per sweep; compiled flat, a render makes one context. The output is the same, byte for byte: each file is
still parsed on its own (whitespace control, the trailing newline dropped) and the trees are joined as
Jinja would join their output; ``tests/test_render_flat.py`` compares every built-in template with Jinja's
own include/extends path. What cannot be joined so simply raises :class:`CannotFlatten`, and the caller
renders the template as Jinja loads it.
"""

from __future__ import annotations

from jinja2 import Environment, Template, TemplateNotFound, nodes
from jinja2.visitor import NodeTransformer


class CannotFlatten(Exception):
    """A template uses something :class:`_Flattener` does not inline: it renders as Jinja loads it."""


# Nodes whose meaning depends on a template's own scope or on other templates at run time.
_KEEP_APART = (
    nodes.Macro,
    nodes.CallBlock,
    nodes.Import,
    nodes.FromImport,
    nodes.Assign,
    nodes.AssignBlock,
    nodes.With,
)


class _Flattener(NodeTransformer):
    """One template's syntax tree with its layout and includes put in place, as Jinja would render them.

    ``{% include "name" %}`` becomes the included template's body in a scope of its own, and a template
    that ``{% extends "layout" %}`` becomes the layout's tree with each ``{% block %}`` replaced by the
    child's block of that name. Every file must autoescape as the rendered template does. Macros, ``set``,
    imports, ``super()``, names given at run time, content outside a child's blocks: refused.
    """

    def __init__(self, env: Environment, autoescape: bool, seen: tuple[str, ...] = ()) -> None:
        self.env = env
        self.autoescape = autoescape
        self.seen = seen
        self.blocks: dict[str, nodes.Block] = {}

    def tree(self, name: str) -> nodes.Template:
        if name in self.seen:
            raise CannotFlatten(f"{name} includes itself")
        if self.env.loader is None:
            raise CannotFlatten("no loader")
        auto = self.env.autoescape(name) if callable(self.env.autoescape) else self.env.autoescape
        if bool(auto) != self.autoescape:
            raise CannotFlatten(f"{name} escapes differently")
        source, filename, _ = self.env.loader.get_source(self.env, name)
        tree = self.env.parse(source, name, filename)
        for node in tree.find_all(_KEEP_APART):
            raise CannotFlatten(f"{name} uses {type(node).__name__}")
        for name_node in tree.find_all(nodes.Name):
            if name_node.name in ("self", "super"):
                raise CannotFlatten(f"{name} refers to {name_node.name}")
        body = list(tree.body)
        if body and isinstance(body[0], nodes.Extends):
            return self._extended(name, body)
        if any(True for _ in tree.find_all(nodes.Extends)):
            raise CannotFlatten(f"{name} extends a layout after its start")
        inner = _Flattener(self.env, self.autoescape, (*self.seen, name))
        inner.blocks = self.blocks
        flat: nodes.Template = inner.visit(tree)
        return flat

    def _extended(self, name: str, body: list[nodes.Node]) -> nodes.Template:
        layout = body[0]
        assert isinstance(layout, nodes.Extends)
        if not isinstance(layout.template, nodes.Const):
            raise CannotFlatten(f"{name} extends a layout named at run time")
        blocks = dict(self.blocks)
        for node in body[1:]:
            if isinstance(node, nodes.Block):
                if any(True for _ in node.find_all((nodes.Block, nodes.Extends))):
                    raise CannotFlatten(f"{name} nests blocks")
                blocks.setdefault(node.name, node)  # a child's block overrides its layout's
            elif not (
                isinstance(node, nodes.Output)
                and all(isinstance(n, nodes.TemplateData) and not n.data.strip() for n in node.nodes)
            ):
                raise CannotFlatten(f"{name} has content outside its blocks")  # Jinja would drop it
        parent = _Flattener(self.env, self.autoescape, (*self.seen, name))
        parent.blocks = blocks
        return parent.tree(str(layout.template.value))

    def visit_Include(self, node: nodes.Include) -> nodes.Node:
        if not isinstance(node.template, nodes.Const) or node.ignore_missing or not node.with_context:
            raise CannotFlatten("an include that is not a plain file name")
        included = _Flattener(self.env, self.autoescape, self.seen)
        tree = included.tree(str(node.template.value))
        if any(True for _ in tree.find_all(nodes.Block)):
            raise CannotFlatten(f"{node.template.value} defines blocks")
        return nodes.Scope(tree.body, lineno=node.lineno)

    def visit_Block(self, node: nodes.Block) -> nodes.Node:
        if node.required:
            raise CannotFlatten(f"block {node.name} is required")
        chosen = self.blocks.get(node.name, node)
        if chosen is not node:  # the child's block, its includes inlined
            chosen = _Flattener(self.env, self.autoescape, self.seen).visit(chosen)
        else:
            self.generic_visit(node)
        return nodes.Scope(chosen.body, lineno=node.lineno)


def flat_template(env: Environment, name: str) -> Template:
    """``name`` compiled as one template, its layout and includes inlined (see :class:`_Flattener`).

    Its globals are a plain copy of the environment's, taken now (Jinja's own templates see later changes
    through a chain of mappings, which every render copies key by key). Raises :class:`CannotFlatten`."""
    auto = env.autoescape(name) if callable(env.autoescape) else env.autoescape
    try:
        tree = _Flattener(env, bool(auto)).tree(name)
    except TemplateNotFound as exc:
        raise CannotFlatten(f"{name}: {exc} not found") from exc
    code = env.compile(tree, name, name)
    return env.template_class.from_code(env, code, dict(env.make_globals(None)))
