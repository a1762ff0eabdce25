"""Publishing an export folder to the Hugging Face Hub (`ftjax push`), through huggingface_hub's HfApi.

The folder must be a finished export with its model card (README.md, ftjax/card.py): a folder without one is
refused rather than published without saying what it is. Offline (HF_HUB_OFFLINE=1) or without a token, the
push stops with one line saying so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def push_folder(folder: str | os.PathLike, repo: str, *, private: bool = True, revision: str | None = None,
                message: str | None = None, dry_run: bool = False, api: Any = None) -> list[str]:
    """Upload every file of `folder` to model repository `repo` (created if missing); returns the file names
    (what would be uploaded, with `dry_run`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder (push an `ftjax export` output)")
    if not (folder / "README.md").is_file():
        raise ValueError(f"{folder} has no README.md model card; export it with `ftjax export`, which writes one")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"--repo={repo!r}: use ORG/NAME (or USER/NAME)")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    if dry_run:
        return files
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = api or HfApi()
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model", revision=revision,
                          commit_message=message or f"ftjax export ({len(files)} files)")
    except OfflineModeIsEnabled:
        raise ValueError("the Hub is unreachable in offline mode (HF_HUB_OFFLINE=1); unset it to push") from None
    except HfHubHTTPError as e:
        raise ValueError(f"the Hub refused the push: {str(e).splitlines()[0]} (log in with `hf auth login` or set "
                         "HF_TOKEN)") from None
    return files
