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


UNUSED = '''
import torch

class Masked(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x, mask=None):
        return self.fc(x).relu()

def factory():
    return Masked()

factory.input_shape = (1, 8)
'''


def test_a_model_with_an_unused_defaulted_input_profiles_and_one_missing_is_named(
        tmp_path, monkeypatch):
    """Before: profile stopped with a bare StopIteration (the profiler fed 'mask' nothing).
    Now an argument left at its default is a constant of the capture; one the model needs
    and is not given is an error naming it."""
    (tmp_path / "unused_input_model.py").write_text(UNUSED)
    (tmp_path / "required_input_model.py").write_text(UNUSED.replace("mask=None", "mask"))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = "unused_input_model:factory"
    for args in (["profile", spec, "-o", str(tmp_path / "p.json"), "--repeat", "1"],
                 ["plan", "--model", spec, "--link", "device-edge=10mbit", "--skip-tier",
                  "cloud"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, _flat(result.output)
    assert (tmp_path / "p.json").exists()
    spec = "required_input_model:factory"
    result = runner.invoke(app, ["profile", spec, "-o", str(tmp_path / "q.json")])
    out = _flat(result.output)
    assert result.exit_code == 2 and not isinstance(result.exception, StopIteration), out
    assert "missing 1 required positional argument: 'mask'" in out, out
    assert f"{spec}:" in out, out  # the spec as typed, not read as an :emoji: code
    assert not (tmp_path / "q.json").exists()
