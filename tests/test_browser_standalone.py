"""The standalone closure page's HTML: everything inlined, nothing able to break out of its tags.
(The page classifying offline in Chromium is in test_browser_volunteer.py.)"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from mlitb.master.closure_page import render_closure_page

LAYERS = [{"type": "input", "out_sx": 2, "out_sy": 2, "out_depth": 1}, {"type": "softmax", "num_classes": 2}]


def closure_text(name: str) -> str:
    params = base64.b64encode(np.zeros(10, "<f4").tobytes()).decode()
    return json.dumps({"format": "mlitb-closure", "name": name, "model": {"layers": LAYERS, "params": params},
                       "classes": ["a", "b"]})


def test_the_page_inlines_every_module_the_entry_imports():
    page = render_closure_page(closure_text("tiny"))
    import_map = json.loads(re.search(r'<script type="importmap">(.*?)</script>', page, re.S)[1])["imports"]
    sources = {name: base64.b64decode(url.split(",", 1)[1]).decode() for name, url in import_map.items()}
    assert {"mlitb/js/standalone.js", "mlitb/js/classify.js", "mlitb/js/image-drop.js", "mlitb/engine/net.js"} <= set(sources)
    for name, source in sources.items():
        for specifier in re.findall(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']""", source):
            assert specifier in sources or specifier.startswith("node:"), (name, specifier)
    assert "<link rel=\"stylesheet\"" not in page and "src=\"" not in page


def test_a_closure_cannot_close_its_script_tag():
    page = render_closure_page(closure_text("</script><script>alert(1)</script>"))
    embedded = re.search(r'<script type="application/json" id="closure">(.*?)</script>', page, re.S)[1]
    assert json.loads(embedded)["name"] == "</script><script>alert(1)</script>"
    assert "<title>&lt;/script&gt;" in page


def test_imports_outside_the_static_directory_are_refused(tmp_path):
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "standalone.js").write_text('import { x } from "../../secret.js";\n')
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "mlitb.css").write_text("")
    with pytest.raises(ValueError, match="outside the static directory"):
        render_closure_page(closure_text("x"), static_dir=tmp_path)
