"""What the README states about the code is what the code does (tables drawn from code, kept in step)."""
from __future__ import annotations

import re

import yaml
from conftest import REPO


def _table(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with `header`, as cells."""
    lines = text[text.index(header):].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_readme_lists_every_annotators_params_and_defaults():
    from annotators.registry import BUILT_IN, load_class

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = {}
    for name, params in _table(readme, "| annotator | params (defaults) |"):
        pairs = re.findall(r"`([a-z_0-9]+): ([^`]*)`", params)
        listed[name.strip("`")] = {key: yaml.safe_load(value) for key, value in pairs}
    assert set(listed) == set(BUILT_IN)
    for name, params in listed.items():
        assert params == load_class(name).default_params, name


def test_the_readme_classes_every_annotator_as_the_code_does():
    """The cascade's cheap/expensive class of each built-in annotator (`Annotator.expensive`)."""
    from annotators.registry import BUILT_IN, load_class

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    costs = {name.strip("`"): cost for name, cost, _ in _table(readme, "| annotator | cost |")}
    assert set(costs) == set(BUILT_IN)
    assert costs == {n: "expensive" if load_class(n).expensive else "cheap" for n in BUILT_IN}


def test_the_readme_and_docs_name_modules_that_exist():
    """Paths the pages point a reader to (`jobs/...py`, `annotators/...`) are files of the repository."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    named = {m for page in pages
             for m in re.findall(r"\b((?:jobs|annotators|udfs|schemas|expectations|bench|tests|deploy)/[\w./-]+\.(?:py|yaml|properties|sh))",
                                 page.read_text(encoding="utf-8"))}
    assert named, "the pages name modules"
    missing = sorted(m for m in named if not (REPO / m).exists())
    assert not missing, missing
