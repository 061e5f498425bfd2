"""Files a run writes get the mode the user's umask gives (0644 under 022), also where the writer (safetensors,
anything using mkstemp) makes them private (0600)."""

from __future__ import annotations

import os
import tempfile

import pytest

from tunesuite.files import atomic_path, give_user_modes, user_mode, write_text_atomic


@pytest.fixture(params=[0o022, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_atomic_writes_follow_the_umask_even_when_the_writer_makes_private_files(tmp_path, umask):
    expected = 0o666 & ~umask
    assert user_mode() == expected
    with atomic_path(tmp_path / "weights.bin") as tmp:
        fd, name = tempfile.mkstemp(dir=tmp_path)  # 0600, as safetensors 0.8 writes
        os.write(fd, b"x")
        os.close(fd)
        os.replace(name, tmp)
    write_text_atomic(tmp_path / "plain.txt", "x")
    assert _mode(tmp_path / "weights.bin") == expected and _mode(tmp_path / "plain.txt") == expected


def test_safetensors_through_the_atomic_writer(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    with atomic_path(tmp_path / "model.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))
    assert _mode(tmp_path / "model.safetensors") == user_mode()


def test_give_user_modes_loosens_only_private_files(tmp_path, umask):
    private, script = tmp_path / "adapter_model.safetensors", tmp_path / "run.sh"
    private.write_bytes(b"x")
    script.write_bytes(b"x")
    os.chmod(private, 0o600)
    os.chmod(script, 0o755)
    give_user_modes(tmp_path)
    assert _mode(private) == 0o666 & ~umask and _mode(script) == 0o755
