"""Atomic writes: the file holds the old text or the new, and nothing is left beside it."""

from neurocvae.files import write_text_atomically


def test_a_file_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path):
    path = tmp_path / "splits.json"
    write_text_atomically(path, "old")
    write_text_atomically(path, "new text")
    assert path.read_text() == "new text"
    assert [p.name for p in tmp_path.iterdir()] == ["splits.json"]
