"""Notebook (HTML) displays of Fit and Comparison.

The renderers live in `html_report`, which sits above `fit` and `compare` (it reads them), so
they are registered here when the package loads instead of being imported from below.
"""

from __future__ import annotations

from typing import Callable

_RENDERERS: dict[str, Callable[[object], str]] = {}


def register(class_name: str, render: Callable[[object], str]) -> None:
    """Use `render(obj) -> str` for the notebook display of objects of class `class_name`."""
    _RENDERERS[class_name] = render


def html(obj) -> str | None:
    """The registered HTML display of `obj`, or None (Jupyter then shows the plain repr)."""
    render = _RENDERERS.get(type(obj).__name__)
    return None if render is None else render(obj)
