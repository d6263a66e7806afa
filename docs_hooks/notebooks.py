"""mkdocs hook: the executed case-study notebooks (case_studies/*.ipynb) as site pages.

Each notebook becomes ``case-studies/<name>.md`` at build time: markdown cells as they are,
code cells as Python blocks, text outputs as plain blocks, HTML outputs (tables) inline and
PNG/SVG figures as image files beside the page.  The notebooks are read, never executed, so
the build is fast and offline; ``case_studies/make_notebooks.py`` executes them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "case_studies"
PREFIX = "case-studies"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _fence(text: str, lang: str = "") -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def _output(out: dict, stem: str, key: str, images: dict[str, bytes]) -> str:
    """Markdown for one output; figures are added to `images` under their page-relative name."""
    if out["output_type"] == "stream":
        return _fence(_text(out["text"]), "text")
    if out["output_type"] == "error":
        return _fence("\n".join(out.get("traceback", [])), "text")
    data = out.get("data", {})
    for mime, ext in (("image/png", "png"), ("image/svg+xml", "svg")):
        if mime in data:
            name = f"{stem}_files/{key}.{ext}"
            raw = _text(data[mime])
            images[name] = raw.encode() if ext == "svg" else base64.b64decode(raw)
            return f"![output {key}]({name})\n"
    if "text/html" in data:
        return f'<div class="nb-output">\n{_text(data["text/html"]).strip()}\n</div>\n'
    if "text/markdown" in data:
        return _text(data["text/markdown"]) + "\n"
    if "text/plain" in data:
        return _fence(_text(data["text/plain"]), "text")
    return ""


def _merged_streams(outputs: list[dict]) -> list[dict]:
    """Consecutive stream outputs of one stream as one (a cell's printed lines, one block)."""
    out: list[dict] = []
    for o in outputs:
        prev = out[-1] if out else None
        if o["output_type"] == "stream" and prev and prev["output_type"] == "stream" and prev["name"] == o["name"]:
            out[-1] = {**prev, "text": _text(prev["text"]) + _text(o["text"])}
        else:
            out.append(o)
    return out


def notebook_markdown(path: Path) -> tuple[str, dict[str, bytes]]:
    """The page text of one executed notebook and its figures (name -> bytes)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts, images = [], {}
    for i, cell in enumerate(nb["cells"]):
        src = _text(cell.get("source", ""))
        if cell["cell_type"] == "markdown":
            parts.append(src.strip() + "\n")
        elif cell["cell_type"] == "code":
            code = "\n".join(ln for ln in src.splitlines() if not ln.startswith("%"))  # IPython magics
            if code.strip():
                parts.append(_fence(code, "python"))
            for j, out in enumerate(_merged_streams(cell.get("outputs", []))):
                parts.append(_output(out, path.stem, f"cell{i}_{j}", images))
    source = f"*Rendered from the executed notebook `case_studies/{path.name}`.*\n"
    return "\n".join(p for p in parts if p) + "\n" + source, images


def on_files(files, config):
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        text, images = notebook_markdown(path)
        files.append(File.generated(config, f"{PREFIX}/{path.stem}.md", content=text))
        for name, data in images.items():
            files.append(File.generated(config, f"{PREFIX}/{name}", content=data))
    return files
