import re
from pathlib import Path

from cli.reference import reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_reference_matches_the_settings_models():
    text = README.read_text()
    found = re.search(r"<!-- config-reference:start -->\n(.*?)\n<!-- config-reference:end -->", text, re.S)
    assert found, "README lost its configuration reference markers"
    assert found.group(1) == reference_markdown(), "regenerate with: python -m cli.reference --update README.md"


def test_readme_quick_start_is_the_two_scripts_and_ci_runs_the_second():
    text = README.read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./scripts/demo.sh", "./scripts/test.sh"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci
