"""Markdown links from the docs to repository files that a docs page includes.

Pages written to read well on GitHub link to files outside ``docs/`` by relative path,
e.g. ``docs/benchmarks.md`` links to ``../benchmarks/README.md``. Sphinx cannot follow such
a link (the file is not part of the documentation), so the page that *includes* that file
(``docs/running_benchmarks.md`` includes ``benchmarks/README.md``) is named in
``conf.py``::

    repo_link_pages = {"benchmarks/README.md": "running_benchmarks"}

and this extension rewrites, when a Markdown page is read, every link to the file into a
link to that page (keeping any ``#anchor``). The source files are not changed: the links
keep working on GitHub. A link to a file outside ``docs/`` that no page includes is left
alone, and MyST warns about it (``-W`` fails the build).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

# [text](target) or [text](target "title"); the target has no spaces or parentheses
_LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?((?:\s+\"[^\"]*\")?\))")


def rewrite_links(text: str, page: str, pages: dict[str, str]) -> str:
    """Point links to included repository files at the pages that include them.

    Parameters
    ----------
    text : str
        A Markdown page's source.
    page : str
        The page's path relative to the repository root, e.g. ``"docs/benchmarks.md"``.
    pages : dict of str to str
        Repository path of an included file -> path of the including page, both relative
        to the repository root (``{"benchmarks/README.md": "docs/running_benchmarks.md"}``).

    Returns
    -------
    str
        The source with those links rewritten; everything else unchanged.
    """
    here = posixpath.dirname(page)

    def replace(match):
        target = match.group(2)
        if "://" in target or target.startswith(("mailto:", "/")):
            return match.group(0)
        resolved = posixpath.normpath(posixpath.join(here, target))
        if resolved not in pages:
            return match.group(0)
        new = posixpath.relpath(pages[resolved], here or ".")
        return f"{match.group(1)}{new}{match.group(3) or ''}{match.group(4)}"

    return _LINK.sub(replace, text)


def _source_read(app, docname, source):
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".md" or not app.config.repo_link_pages:
        return
    root = Path(app.srcdir).parent
    pages = {repo_path: f"{Path(app.srcdir).relative_to(root).as_posix()}/{doc}.md"
             for repo_path, doc in app.config.repo_link_pages.items()}
    source[0] = rewrite_links(source[0], path.relative_to(root).as_posix(), pages)


def setup(app):
    app.add_config_value("repo_link_pages", {}, "env", types=[dict])
    app.connect("source-read", _source_read)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
