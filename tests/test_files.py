"""write_atomic: the new file whole, or the old one untouched; writable_folder: a folder that cannot be written
stops a command before its work."""

import pytest
from PIL import Image

from sr3_edu.cli import main
from sr3_edu.files import writable_folder, write_atomic


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    assert write_atomic(path, lambda f: f.write(b"first")) == path
    write_atomic(path, lambda f: f.write(b"second"), durable=True)
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["out.bin"]


def test_a_failing_write_keeps_the_old_file_and_cleans_up(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt  # as when the user presses Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_writable_folder_makes_a_missing_folder(tmp_path):
    assert writable_folder(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir() and not any((tmp_path / "a" / "b").iterdir())


def test_writable_folder_names_the_flag_and_the_folder_it_cannot_write(tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(ValueError, match=r"--out-dir: cannot write into .*notes\.txt/figures .*a folder you can write"):
        writable_folder(tmp_path / "notes.txt" / "figures", "--out-dir")


@pytest.mark.parametrize(
    "command, flag",
    [
        (["upscale", "--input", "IN", "--output", "BLOCKED/x4.png"], "--output"),
        (["upscale", "--input", "IN_DIR", "--output", "BLOCKED/x4"], "--output"),
        (["demo", "--out-dir", "BLOCKED/figures"], "--out-dir"),
        (["evaluate", "--json", "BLOCKED/scores.json"], "--json"),
        (["search", "--json", "BLOCKED/search.json"], "--json"),
    ],
)
def test_commands_refuse_an_output_they_cannot_write_before_loading_the_model(tmp_path, capsys, command, flag):
    # a missing model file: had the command loaded the model before checking where it writes, that would be the error
    (tmp_path / "blocked").write_text("a file where a folder is needed")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "p.png")
    paths = {"IN": str(photos / "p.png"), "IN_DIR": str(photos)}
    argv = [paths.get(a, a.replace("BLOCKED", str(tmp_path / "blocked"))) for a in command]
    assert main(argv + ["--checkpoint", str(tmp_path / "missing.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{flag}: cannot write into" in err and "missing.pt" not in err
