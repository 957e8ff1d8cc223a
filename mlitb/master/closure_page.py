"""The standalone closure page: one HTML file that classifies images offline.

`render_closure_page` inlines the research closure (as JSON in a script tag),
the stylesheet and the JavaScript modules it needs (the page module, the
classify module and the JS engine). Each module becomes a `data:` URL in an
import map under a bare `mlitb/` name, with its relative imports rewritten to
those names, so the file runs from disk, from an e-mail attachment or any
static host, with no server.
"""

from __future__ import annotations

import base64
import html
import json
import posixpath
import re
from pathlib import Path

from mlitb.master.settings import STATIC_DIR
from mlitb.security_headers import script_hash

ENTRY = "js/standalone.js"
# Relative specifiers of static imports, `export ... from` and dynamic import().
_IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])(\.{1,2}/[^"']+)\2""")


def render_closure_page(closure_text: str, static_dir: Path = STATIC_DIR) -> str:
    """A self-contained HTML page for this closure JSON text."""
    closure = json.loads(closure_text)
    name = _model_name(closure)
    modules = _collect_modules(static_dir, ENTRY)
    imports = {f"mlitb/{path}": "data:text/javascript;base64," + base64.b64encode(source.encode()).decode()
               for path, source in modules.items()}
    import_map = json.dumps({"imports": imports}, separators=(",", ":"))
    css = (static_dir / "css" / "mlitb.css").read_text(encoding="utf-8")
    embedded = closure_text.replace("<", "\\u003c")
    return _PAGE.format(
        title=html.escape(name),
        css=css.replace("</", "<\\/"),
        import_map=import_map.replace("</", "<\\/"),
        closure=embedded,
        entry=json.dumps(f"mlitb/{ENTRY}"),
    )


_INLINE_SCRIPT = re.compile(r'<script type="(?:importmap|module)">(.*?)</script>', re.S)


def closure_page_policy(page: str) -> str:
    """The page's own Content-Security-Policy when the master serves it: its inline scripts by hash,
    its modules as the data: URLs the import map names, nothing from the network, never framed."""
    hashes = " ".join(script_hash(script) for script in _INLINE_SCRIPT.findall(page))
    return "; ".join((
        "default-src 'none'",
        f"script-src {hashes} data: 'wasm-unsafe-eval'",
        "style-src 'unsafe-inline'",
        "img-src data: blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ))


def _model_name(closure: object) -> str:
    name = closure.get("name") if isinstance(closure, dict) else None
    return name if isinstance(name, str) and name else "mlitb model"


def _collect_modules(static_dir: Path, entry: str) -> dict[str, str]:
    """Every module reachable from `entry` by relative imports, rewritten to `mlitb/` names."""
    modules: dict[str, str] = {}
    pending = [entry]
    while pending:
        path = pending.pop()
        if path in modules:
            continue
        source = (static_dir / path).read_text(encoding="utf-8")
        base = posixpath.dirname(path)

        def rewrite(match: re.Match[str]) -> str:
            target = posixpath.normpath(posixpath.join(base, match[3]))
            if target.startswith("../"):
                raise ValueError(f"{path} imports {match[3]}, outside the static directory")
            pending.append(target)
            return f"{match[1]}{match[2]}mlitb/{target}{match[2]}"

        modules[path] = _IMPORT.sub(rewrite, source)
    return modules


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · mlitb closure</title>
<link rel="icon" href="data:,">
<style>
{css}
</style>
<script type="importmap">{import_map}</script>
</head>
<body>
<header class="site-header"><span class="brand">ml<span>itb</span></span><span class="muted">research closure, runs offline</span></header>
<main>
  <h1 id="title">{title}</h1>
  <p class="lead">This single file holds a trained model (its layers and parameters) and the code that runs it. Drop an image to classify it; no server is involved.</p>
  <section class="card">
    <div class="row">
      <label class="inline">Image file <input type="file" id="image-file" accept="image/*"></label>
      <label class="inline">Colours <select id="invert"><option value="auto">auto</option><option value="no">as they are</option><option value="yes">inverted</option></select></label>
      <span class="spacer"></span>
      <a id="download" class="button secondary">Download the closure JSON</a>
    </div>
    <div id="dropzone" class="dropzone" style="margin-top: 0.75rem">Drop an image here</div>
    <div id="message" class="message info" role="status">Loading the model…</div>
    <div class="preview" style="margin-top: 1rem">
      <img id="picture" class="hidden" alt="the image to classify" width="160">
      <div><h3>model input</h3><canvas id="input-view" class="input-view"></canvas></div>
      <div style="flex: 1; min-width: 14rem"><h3>top classes</h3><div id="bars" class="bars" aria-live="polite"></div></div>
    </div>
  </section>
</main>
<script type="application/json" id="closure">{closure}</script>
<script type="module">import {entry};</script>
</body>
</html>
"""
