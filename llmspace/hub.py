"""Push a folder (an export, a Space) to the Hugging Face Hub.

The token comes from ``HF_TOKEN`` (or ``HUGGING_FACE_HUB_TOKEN``) or from a
prior ``huggingface-cli login``; it is handed to ``huggingface_hub`` and never
printed, logged or put in an error message. ``dry_run`` lists what would be
uploaded, with sizes, without a token or a network.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from llmspace.export.errors import HubError

IGNORE = (".git", "__pycache__", ".work", ".cache")
IGNORE_PATTERNS = [".git/*", "**/__pycache__/*", "*.pyc", "*.tmp", ".work/*", ".cache/*"]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


@dataclass
class PushResult:
    repo: str
    repo_type: str
    files: list[tuple[str, int]]  # (path in the repo, bytes)
    dry_run: bool
    url: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


def plan_files(folder: Path) -> list[tuple[str, int]]:
    """Every file that would be uploaded, relative to ``folder``, with its size."""
    out = []
    for p in sorted(Path(folder).rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part in IGNORE for part in rel.parts) and p.suffix not in (".pyc", ".tmp"):
            out.append((rel.as_posix(), p.stat().st_size))
    return out


def find_token() -> str | None:
    """The Hub token from the environment or the stored login, else None (never printed)."""
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(key):
            return os.environ[key]
    from huggingface_hub import get_token

    return get_token()


def space_sdk(folder: Path) -> str | None:
    """``sdk`` from a Space README's front matter."""
    from llmspace.export.space import read_front_matter

    readme = Path(folder) / "README.md"
    return read_front_matter(readme).get("sdk") if readme.exists() else None


def push(folder: Path | str, repo: str, *, private: bool = False, dry_run: bool = False,
         repo_type: str = "model", token: str | None = None, message: str | None = None) -> PushResult:
    """Create ``repo`` if needed and upload ``folder`` to it (one commit)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise HubError(f"{folder} is not a folder. Push an export (`llmspace export onnx`) or a Space "
                       "(`llmspace space build`).", param="folder")
    if not REPO_ID.match(repo or ""):
        raise HubError(f"{repo!r} is not a repo id: use owner/name, e.g. --repo alice/smollm2-onnx.", param="repo")
    files = plan_files(folder)
    if not files:
        raise HubError(f"{folder} is empty: nothing to push.", param="folder")
    sdk = space_sdk(folder) if repo_type == "space" else None
    if repo_type == "space" and not sdk:
        raise HubError(f"{folder}/README.md has no `sdk` in its front matter: build it with `llmspace space build`.")
    result = PushResult(repo, repo_type, files, dry_run)
    if dry_run:
        return result
    token = token or find_token()
    if not token:
        raise HubError("No Hugging Face token found. Run `huggingface-cli login` or set HF_TOKEN (a write token "
                       "from your Hub settings), then retry. `--dry-run` lists the files without one.")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, private=private, repo_type=repo_type, exist_ok=True, space_sdk=sdk)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type=repo_type,
                          commit_message=message or f"Upload {folder.name} with llmspace",
                          ignore_patterns=IGNORE_PATTERNS)
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        hint = {401: "the token is invalid or expired: log in again",
                403: "the token cannot write to this repo: use a write token or your own namespace"}.get(status, "")
        raise HubError(f"The Hub refused the push to {repo} (HTTP {status}){': ' + hint if hint else ''}. "
                       f"{_first_line(exc, token)}") from None
    except (OSError, ValueError) as exc:  # requests' ConnectionError is an OSError
        raise HubError(f"Could not reach the Hub to push {repo}: {_first_line(exc, token)} "
                       "Check the network (or HF_ENDPOINT) and retry.") from None
    result.url = str(url)
    return result


def _first_line(exc: Exception, token: str) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace(token, "***")[:300]
