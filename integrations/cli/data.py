"""Local data files for the commands that read a dataset (``hff sft``, ``kd``, ``es``, ``order``): loaded by suffix,
offline."""

from __future__ import annotations

from pathlib import Path

LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def load_local_file(name: str, split: str | None = None, *, flag: str = "--dataset_name"):
    """``load_dataset`` for a local data file by its suffix (offline); None when ``name`` is not a file."""
    from datasets import load_dataset

    path = Path(name)
    if not path.is_file():
        return None
    builder = LOCAL_FORMATS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(
            f"{flag} {name!r} is a file with suffix {path.suffix!r}; accepted local files: "
            f"{', '.join(sorted(LOCAL_FORMATS))} (or pass a folder or Hub id)"
        )
    return load_dataset(builder, data_files=str(path), split=split)
