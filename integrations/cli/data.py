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


def _looks_like_file(name: str) -> bool:
    path = Path(name).expanduser()
    return path.exists() or path.suffix.lower() in LOCAL_FORMATS or name.startswith((".", "/", "~"))


def check_dataset(
    name: str | None,
    *,
    flag: str = "--dataset_name",
    columns_any: tuple[str, ...] = (),
    columns_all: tuple[str, ...] = (),
    split: str | None = "train",
):
    """Fail fast, naming ``flag``, on a dataset that cannot be trained on: a missing or empty local file, a local
    file without any of ``columns_any`` (or without all of ``columns_all``), a Hub id that is offline and not
    cached. Returns the loaded local ``Dataset`` (None for a folder or a Hub id, which load as usual)."""
    import os

    if not name:
        raise ValueError(
            f"pass {flag} (a local .jsonl/.json/.csv/.parquet/.txt file, a folder or a Hub dataset id)"
        )
    path = Path(name).expanduser()
    if _looks_like_file(name) and not path.exists():
        raise ValueError(f"{flag} {name!r}: no such file")
    if path.is_dir():
        return None
    if path.is_file():
        if path.stat().st_size == 0 or not path.read_bytes()[: 1 << 16].strip():
            raise ValueError(f"{flag} {name!r} is empty")
        dataset = load_local_file(name, split=split or "train", flag=flag)
        if len(dataset) == 0:
            raise ValueError(f"{flag} {name!r} has no rows")
        columns = dataset.column_names
        if columns_any and not any(c in columns for c in columns_any):
            wanted = " or ".join(repr(c) for c in columns_any)
            raise ValueError(f"{flag} {name!r} needs a {wanted} column; it has {columns}")
        missing = [c for c in columns_all if c not in columns]
        if missing:
            raise ValueError(f"{flag} {name!r} needs the column(s) {missing}; it has {columns}")
        return dataset
    offline = any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    if offline:
        from huggingface_hub import scan_cache_dir

        try:
            cached = {r.repo_id for r in scan_cache_dir().repos if r.repo_type == "dataset"}
        except Exception:  # no cache folder at all
            cached = set()
        if name not in cached:
            raise ValueError(
                f"{flag} {name!r}: no such local file or folder, and offline (HF_HUB_OFFLINE=1) with no cached "
                "copy of that Hub dataset"
            )
    return None
