"""write_atomic: the new file whole, or the old one untouched."""

import pytest

from sr3_edu.files import write_atomic


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
