"""mkdocs hook: TeX math rendered to MathML at build time, so pages need no script and no
network to show equations (browsers render MathML natively).

pymdownx.arithmatex (generic mode) wraps ``$...$`` and ``$$...$$`` as ``\\(...\\)`` and
``\\[...\\]`` inside ``<span|div class="arithmatex">``; this hook replaces each body by the
MathML of latex2mathml, keeping the wrapper (and the TeX as the MathML annotation).
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
_DELIMS = {"span": (r"\(", r"\)"), "div": (r"\[", r"\]")}
# operator names latex2mathml does not know, written as the \operatorname it does
_OPERATORS = re.compile(r"\\(arg)(?![A-Za-z])")
# what latex2mathml leaves of a command it does not know, or of an alignment it ignores
_UNRENDERED = re.compile(r"<mi>(\\[A-Za-z]+|&amp;|&)</mi>")


def _render(m: re.Match) -> str:
    tag, body = m.group(1), html.unescape(m.group(2)).strip()
    left, right = _DELIMS[tag]
    if body.startswith(left) and body.endswith(right):
        body = body[len(left) : -len(right)]
    display = "block" if tag == "div" else "inline"
    try:
        mathml = convert(_OPERATORS.sub(r"\\operatorname{\1}", body.strip()), display=display)
    except Exception as e:  # a TeX construct latex2mathml lacks: fail the build, naming it
        raise ValueError(f"cannot render math {body!r}: {e}") from None
    left_over = _UNRENDERED.search(mathml)
    if left_over:
        raise ValueError(f"cannot render {html.unescape(left_over.group(1))!r} in math {body!r}")
    return f'<{tag} class="arithmatex">{mathml}</{tag}>'


def on_page_content(content: str, page, config, files) -> str:
    return _MATH.sub(_render, content)
