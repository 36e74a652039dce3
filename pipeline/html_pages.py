"""Self-contained HTML pages (no external assets) for the reports: one style, tables, the page shell."""

from __future__ import annotations

import html

STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}code{font-size:12px}
.frames{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:8px}
figure{margin:0}figure img{width:100%;display:block}figcaption{font-size:12px;color:#555}
svg{background:#fafafa;border:1px solid #e4e4e4}.legend span{margin-right:12px;font-size:12px}
"""


def table(header: list[str], rows: list[list[object]], *, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (cells already HTML)."""
    cell = (lambda c: str(c)) if raw else (lambda c: html.escape(str(c)))
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")  # fmt: skip
