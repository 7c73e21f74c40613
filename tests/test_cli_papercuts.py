"""Papercuts a new user hits on the command line (issue 23): a bad plan file, a model with an
unused input, TLS mistakes between client and tier server."""
import re

import pytest
from typer.testing import CliRunner

from tiercut.cli import app

runner = CliRunner()


def _flat(text):
    """Rich wraps messages: join them back into one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty"), (b"  \n", "is blank"), (b"{}", "plan field 'format' is None"),
    (b"[]", "must be a JSON object, got list"), (b"plan: yes", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON")])
def test_a_bad_plan_file_is_named_and_says_what_a_plan_holds(tmp_path, content, fragment):
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    for command in ("infer", "bench"):
        result = runner.invoke(app, [command, "--plan", str(path)])
        out = _flat(result.output)
        assert result.exit_code == 2, out
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in out
        assert f"--plan '{path}'" in out and fragment in out, out
        assert "tiercut plan --json" in out and "tiercut-stageplan/1" in out, out
