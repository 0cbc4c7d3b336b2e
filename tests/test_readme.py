"""README.md and .ci/run stay in step: CI installs and tests exactly as the README tells a user."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands(section: str) -> list[str]:
    """The command lines in the first code block under the README heading ``section``."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^## {re.escape(section)}\n.*?```\n(.*?)```", text, flags=re.S | re.M)
    assert match, f"README.md has no code block under '## {section}'"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readme_setup_and_test_commands():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for section in ("Set up", "Run the tests"):
        commands = readme_commands(section)
        assert len(commands) == 1, f"'{section}' must be one command"
        assert commands[0] in ci, f".ci/run does not run the README's '{section}' command: {commands[0]}"


def test_main_job_is_one_real_command():
    commands = readme_commands("The main job")
    assert len(commands) == 1
    assert commands == [".venv/bin/perception train"]  # the main job: train the default model


def test_every_readme_config_path_exists():
    text = (REPO / "README.md").read_text()
    names = re.findall(r"--config ([a-z_]+)(?=\s)", text)  # shipped names, not files like my.yaml
    assert names
    for name in names:
        assert (REPO / "perception" / "configs" / f"{name}.yaml").is_file(), name
