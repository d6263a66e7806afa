"""Progress bars: tqdm.auto's, a widget in notebooks (with ipywidgets) and a text line on stderr
otherwise."""

from __future__ import annotations

import warnings


def progress_bar(iterable=None, leave: bool = False, **kw):
    """A tqdm.auto bar over `iterable` (or with `total=`); `leave`: keep it when it closes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # without ipywidgets tqdm.auto says so, then falls back to text
        from tqdm.auto import tqdm
    return tqdm(iterable, leave=leave, dynamic_ncols=True, **kw)
