"""A checkpoint that ships Python code is refused before loading, unless trusted."""

from __future__ import annotations

import subprocess
import sys

from bbuqc.models.safety import python_files, remote_code_problem


def checkpoint(tmp_path, *extra):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    for name in extra:
        (folder / name).write_text("import os\n")
    return folder


def test_a_plain_checkpoint_is_fine(tmp_path):
    folder = checkpoint(tmp_path)
    (folder / "sub").mkdir()
    (folder / "sub" / "helper.py").write_text("")  # transformers only imports top-level files
    assert remote_code_problem(str(folder), "model.path", trusted=False) is None


def test_python_files_are_named_and_refused(tmp_path):
    folder = checkpoint(tmp_path, "modeling_evil.py", "configuration_evil.py")
    problem = remote_code_problem(str(folder), "model.adapter", trusted=False)
    assert problem == (
        f"model.adapter={folder}: the folder carries Python code (configuration_evil.py, modeling_evil.py) "
        "that loading would run; every supported model is native to transformers, so remove the files, "
        "or set model.trust_remote_code=true if you trust this code"
    )
    assert "\n" not in problem
    assert remote_code_problem(str(folder), "model.path", trusted=True) is None


def test_many_files_are_summarised(tmp_path):
    folder = checkpoint(tmp_path, *[f"m{i}.py" for i in range(8)])
    assert python_files(folder) == [f"m{i}.py" for i in range(8)]
    assert "m0.py, m1.py, m2.py, m3.py, m4.py and 3 more" in remote_code_problem(str(folder), "model.path", False)


def test_missing_or_unset_folders_are_left_to_other_checks(tmp_path):
    assert remote_code_problem(str(tmp_path / "nope"), "model.path", False) is None
    assert remote_code_problem("", "model.adapter", False) is None


def test_no_torch_import():
    code = "import sys, bbuqc.models.safety; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
