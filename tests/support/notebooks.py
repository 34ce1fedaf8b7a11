"""Notebooks for tests and benchmarks: nbformat 4.5 JSON, one code cell per source, no outputs."""

from __future__ import annotations


def notebook(*sources: str) -> dict:
    """A notebook as JupyterLab saves it, with a code cell (never run) for each source."""
    cells = [
        {
            "id": f"cell-{index}",
            "cell_type": "code",
            "source": source,
            "metadata": {},
            "outputs": [],
            "execution_count": None,
        }
        for index, source in enumerate(sources)
    ]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def notebook_model(*sources: str) -> dict:
    """The body of a contents API `PUT` that saves `notebook(*sources)`, as the browser sends it."""
    return {"type": "notebook", "content": notebook(*sources)}
