"""ftjax push: an export folder with its model card goes to the Hub through HfApi (a recording stand-in here:
no hub is reachable), a folder without a card or a bad repo id is refused, and offline mode is one line."""

from __future__ import annotations

import pytest

from conftest import run_ftjax
from ftjax.hub import push_folder


class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo, **kw):
        self.calls.append(("create_repo", repo, kw))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw["repo_id"], kw))


def _export(tmp_path):
    out = tmp_path / "export"
    (out / "sub").mkdir(parents=True)
    (out / "README.md").write_text("---\nlibrary_name: peft\n---\n# card\n")
    (out / "adapter_model.safetensors").write_bytes(b"x")
    (out / "sub" / "tokenizer.json").write_text("{}")
    return out


def test_push_creates_a_private_repo_and_uploads_the_folder(tmp_path):
    out, api = _export(tmp_path), FakeApi()
    files = push_folder(out, "org/b77-lora", api=api, message="first")
    assert files == ["README.md", "adapter_model.safetensors", "sub/tokenizer.json"]
    (what, repo, kw), (what2, repo2, kw2) = api.calls
    assert (what, repo, kw["private"], kw["exist_ok"]) == ("create_repo", "org/b77-lora", True, True)
    assert (what2, repo2, kw2["folder_path"], kw2["commit_message"]) == ("upload_folder", "org/b77-lora", str(out),
                                                                        "first")


def test_push_refuses_what_it_should_not_publish(tmp_path):
    out = _export(tmp_path)
    with pytest.raises(ValueError, match="use ORG/NAME"):
        push_folder(out, "just-a-name", api=FakeApi())
    (out / "README.md").unlink()
    with pytest.raises(ValueError, match="no README.md model card"):
        push_folder(out, "org/x", api=FakeApi())
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        push_folder(tmp_path / "missing", "org/x", api=FakeApi())


def test_command_dry_run_and_offline_are_one_line(tmp_path):
    out = _export(tmp_path)
    done = run_ftjax("push", f"--folder={out}", "--repo=org/b77-lora", "--dry_run")
    assert "would upload 3 files to https://huggingface.co/org/b77-lora" in done.stdout
    failed = run_ftjax("push", f"--folder={out}", "--repo=org/b77-lora", check=False)  # HF_HUB_OFFLINE=1 in tests
    assert failed.returncode == 2 and "offline mode" in failed.stderr.strip().splitlines()[-1]
