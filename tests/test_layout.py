"""The layout holds: no import circle in edge/ or training/ (imports inside functions counted), few modules
left directly in edge/ (scripts/checks/layout.py; `lint-imports` checks the layers in .ci/run)."""

from __future__ import annotations

from conftest import load_script

layout = load_script("layout")


def test_no_import_circle_and_at_most_twelve_modules_at_the_top_of_edge():
    known = layout.modules()
    graph = {name: layout.imports(name, path, known) for name, path in known.items()}
    assert layout.circles(graph) == []
    top = [name for name, path in known.items() if path.parent.name == "edge" and path.name != "__init__.py"]
    assert len(top) <= 12, top


def test_a_circle_is_found_even_through_an_import_inside_a_function(tmp_path, monkeypatch):
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "__init__.py").write_text("")
    (tmp_path / "edge" / "a.py").write_text("from edge import b\n")
    (tmp_path / "edge" / "b.py").write_text("def f():\n    from edge.a import x\n")
    monkeypatch.setattr(layout, "REPO", tmp_path)
    monkeypatch.setattr(layout, "PACKAGES", ("edge",))
    known = layout.modules()
    assert layout.circles({name: layout.imports(name, path, known) for name, path in known.items()}) == [
        ["edge.a", "edge.b"]]
