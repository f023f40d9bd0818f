"""Every message that sends the user to the docs names a file and a section that exist."""
import ast
import re

import pytest

from tests.helpers.paths import REPO

# calls whose text a user reads: errors, warnings, printed lines, --help
MESSAGE_CALLS = {"UserError", "print", "print_line", "warning", "info", "error", "ArgumentParser", "add_argument",
                 "ValueError", "save_failed"}
DOC_FILE = re.compile(r"docs/([\w-]+\.md)")
DOC_SECTION = re.compile(r"docs/([\w-]+\.md)[:,] ([A-Za-z][\w ]*)")
README_SECTION = re.compile(r"README(?:, |'s section )([A-Z][\w ]*[\w])|README's ([\w ]+) section")


def messages():
    """(file, text) of every string constant inside a message call of the template's own code."""
    for path in sorted(REPO.glob("**/*.py")):
        if {"tests", ".git", "saved", "data"} & set(path.relative_to(REPO).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _name(node.func) in MESSAGE_CALLS:
                text = "".join(part.value for part in ast.walk(node)
                               if isinstance(part, ast.Constant) and isinstance(part.value, str))
                yield path.relative_to(REPO), text


def _name(func):
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def labels(markdown):
    """What a section is called in a doc: its headings and the bold or plain labels that open a paragraph."""
    found = set()
    for line in markdown.splitlines():
        label = re.sub(r"^(#+ |- \*\*|\*\*|- |\| )", "", line.strip())
        found.add(label.lower())
    return found


def test_messages_point_to_sections_that_exist():
    readme_headings = {line.lstrip("#").strip() for line in (REPO / "README.md").read_text().splitlines()
                       if line.startswith("## ")}
    references = 0
    for path, text in messages():
        for name in DOC_FILE.findall(text):
            references += 1
            assert (REPO / "docs" / name).is_file(), f"{path}: docs/{name} does not exist"
        for name, section in DOC_SECTION.findall(text):
            doc_labels = labels((REPO / "docs" / name).read_text())
            assert any(label.startswith(section.strip().lower()) for label in doc_labels), f"{path}: {section}"
        for section in (a or b for a, b in README_SECTION.findall(text)):
            references += 1
            assert section in readme_headings, f"{path}: the README has no section '{section}'"
    assert references >= 3  # the check reads real messages


@pytest.mark.parametrize("text", ["(see README, Hyperparameter search)", "see the README's config section"])
def test_a_missing_readme_section_is_caught(text):
    headings = {line.lstrip("#").strip() for line in (REPO / "README.md").read_text().splitlines()
                if line.startswith("## ")}
    (found,) = README_SECTION.findall(text)
    assert (found[0] or found[1]) not in headings


# a test reference beside a statement: [tests/test_x.py], [tests/test_x.py::test_name], several, or with words
# on what they run ([tests/test_x.py: a SIGKILL ...]); each test file named inside the brackets counts
TEST_REFERENCE = re.compile(r"\[(tests/[^\]]+)\]")
TEST_NAME = re.compile(r"tests/[\w/]+\.py(?:::\w+)?")


def missing_tests(markdown):
    """The `[tests/...]` references in `markdown` whose file, or test function in it, does not exist."""
    missing = []
    for group in TEST_REFERENCE.findall(markdown):
        for reference in TEST_NAME.findall(group):
            path, _, name = reference.partition("::")
            if not (REPO / path).is_file():
                missing.append(reference)
            elif name and name not in functions_of(REPO / path):
                missing.append(reference)
    return missing


def functions_of(path):
    return {node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}


def test_every_test_a_doc_names_exists():
    references = 0
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        references += len(TEST_REFERENCE.findall(doc.read_text()))
        assert missing_tests(doc.read_text()) == [], doc.name
    assert references >= 20  # the check reads the docs' real references


def test_a_reference_to_a_missing_test_is_caught():
    text = ("kept [tests/test_tune.py::test_trials_are_named_runs], [tests/test_tune.py::test_no_such_test,\n"
            "tests/test_no_such_file.py] and [tests/test_trackers.py: what it runs]")
    assert missing_tests(text) == ["tests/test_tune.py::test_no_such_test", "tests/test_no_such_file.py"]
