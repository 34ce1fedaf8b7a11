"""The notebook helper builds what nbformat, and so Jupyter, accepts."""

from __future__ import annotations

import nbformat
import pytest

from tests.support.notebooks import notebook, notebook_model


@pytest.mark.parametrize("sources", [(), ("x = 1",), ("import os", "print(os.getcwd())")])
def test_a_notebook_is_valid_nbformat_with_one_code_cell_per_source(sources) -> None:
    built = notebook(*sources)
    nbformat.validate(nbformat.from_dict(built))
    assert [cell["source"] for cell in built["cells"]] == list(sources)
    assert {cell["cell_type"] for cell in built["cells"]} <= {"code"}


def test_a_notebook_model_is_what_the_contents_api_takes() -> None:
    assert notebook_model("x = 1") == {"type": "notebook", "content": notebook("x = 1")}
