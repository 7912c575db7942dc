"""Drop duplicate <script> tags from the pages of the built book.

Sphinx 7.4 adds a script registered after the builder started (sphinx-thebe's
inline ``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) twice: once
with ``filename=None`` and once, in ``prepare_writing``, with ``filename=''``.
Declaring a ``const`` twice is an uncaught SyntaxError on every page.  This
extension keeps the first of each identical script when a page is written.
"""


def _key(script):
    attributes = getattr(script, "attributes", {}) or {}
    return (getattr(script, "filename", None) or "", tuple(sorted(attributes.items())))


def _dedupe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    # late, so that scripts other extensions add for this page are seen too
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
