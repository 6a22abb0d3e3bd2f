"""The `cliphand` command: data verbs and prompts, and one-line errors."""

from __future__ import annotations

import pytest

from cliphand.cli import main
from cliphand.data.synthetic import generate


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "raw"
    generate(root, n_train=3, n_eval=2, image_size=96, seed=1, workers=1, progress=False)
    return root


def test_prompts_prints_three_axes(raw, capsys):
    assert main(["prompts", "4", "--root", str(raw)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l[:2] for l in lines] == ["x:", "y:", "z:"] and "wrist" in lines[0]


def test_data_show_writes_a_contact_sheet(raw, tmp_path):
    out = tmp_path / "sheet.png"
    assert main(["data", "show", "--root", str(raw), "--n", "4", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["prompts", "0", "--root", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and "Traceback" not in err


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["data", "generate", "--help"])
    assert "default: 1000" in capsys.readouterr().out
