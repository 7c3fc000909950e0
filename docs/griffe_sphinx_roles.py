"""A griffe extension for the API pages: geomvol's docstrings are written for Sphinx, naming other objects with
roles (``:func:`geomvol.stages.probe```) and formulas with ``:math:`` and ``.. math::``. Shown as Markdown, the
role's name would print before the code and a formula would run into the text. This turns each
``:role:`target``` into the code span of its target and each ``.. math::`` block into a fenced block of its
LaTeX source."""

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const|math):`~?([^`]+)`")
MATH = re.compile(r"^(\s*)\.\. math::\s*(.*)$")


def markdown(text: str) -> str:
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        directive = MATH.match(lines[i])
        if directive is None:
            out.append(lines[i])
            i += 1
            continue
        indent, formula = directive.groups()
        body = [formula] if formula else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            if lines[i].strip():
                body.append(lines[i].strip())
            i += 1
        out += ["", f"{indent}```latex", *(f"{indent}{line}" for line in body), f"{indent}```", ""]
    return ROLE.sub(r"`\1`", "\n".join(out))


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
